"""The Store's reads for the driver's bookkeeping: equivalence-cache lookups, counters, feedback order."""

from __future__ import annotations

from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy import func, select

from memnas.records import TrialStatus
from memnas.store._models import FeedbackRow, TrialRow
from memnas.store._statements import _sql


class CacheQueries:
    """Mixed into `memnas.store.Store`: reads on the driver's path, by compiled statements."""

    engine: sa.Engine        # set by Store
    _session: Any            # Store's session factory

    def evaluations(self, fingerprint: str, sym_hash: str, fn_hash: str | None = None,
                    budget_key: str | None = None) -> list[dict[str, Any]]:
        """Completed, really evaluated trials (any experiment) under an evaluator fingerprint
        whose symbolic or functional hash matches: the equivalence cache's lookup.

        Trials run with an input artifact are left out: their result depends on more
        than their candidate (e.g. a sharpDARTS supernet run, an IMP round). Only trials
        run at the same budget (``budget_key``, None: no budget) match."""
        sql = _sql()
        q = sql.evaluations_sym_fn if fn_hash else sql.evaluations_sym
        params = {"fingerprint": fingerprint, "sym_hash": sym_hash, "fn_hash": fn_hash,
                  "budget_key": budget_key or ""}
        with self.engine.connect() as conn:  # Core, a statement built once: no session
            return [dict(r) for r in conn.execute(q, params).mappings()]

    def evaluations_many(self, fingerprint: str, sym_hashes: Sequence[str],
                         budget_key: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """`evaluations` by symbolic hash for several hashes in one query:
        ``{sym_hash: [trial rows, oldest first]}`` for the hashes that have any."""
        found: dict[str, list[dict[str, Any]]] = {}
        wanted = sorted(set(sym_hashes))
        if not wanted:
            return found
        params = {"fingerprint": fingerprint, "sym_hashes": wanted, "budget_key": budget_key or ""}
        with self.engine.connect() as conn:
            for r in conn.execute(_sql().evaluations_syms, params).mappings():
                found.setdefault(r["sym_hash"], []).append(dict(r))
        return found

    def cache_counters(self, exp_id: int) -> dict[str, float]:
        """Equivalence-cache counters: misses (real evaluations), hits, attached, seconds saved."""
        q = (select(TrialRow.status, TrialRow.cache_kind, func.count(),
                    func.coalesce(func.sum(TrialRow.saved_time), 0.0))
             .where(TrialRow.experiment_id == exp_id)
             .group_by(TrialRow.status, TrialRow.cache_kind))
        out = {"misses": 0, "hits": 0, "attached": 0, "saved_s": 0.0}
        with self._session() as s:
            for status, kind, n, saved in s.execute(q):
                if status == TrialStatus.CACHED:
                    out["attached" if kind == "attached" else "hits"] += n
                    out["saved_s"] += float(saved)
                elif status in (TrialStatus.COMPLETED, TrialStatus.FAILED):
                    out["misses"] += n
        return out

    def feedback_order(self, exp_id: int) -> dict[int, int]:
        """``{trial id: seq}``: when each trial of the experiment was fed back to its
        algorithm, as a position among all the calls made to it (proposals and feedbacks)."""
        q = select(FeedbackRow.trial_id, FeedbackRow.seq).where(
            FeedbackRow.experiment_id == exp_id)
        with self.engine.connect() as conn:
            return {t: q_ for t, q_ in conn.execute(q)}
