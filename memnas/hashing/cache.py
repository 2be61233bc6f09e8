"""EquivalenceCache: a candidate equal to one evaluated (or being evaluated) is not run again."""

from __future__ import annotations

import time
from typing import Any, Sequence

from memnas.hashing._functional import functional_hash
from memnas.records import Outcome, TrialStatus, error_summary


class EquivalenceCache:
    """The functional-equivalence cache (FEC) of Gillard et al. 2023, backed by the store.

    A candidate is looked up first by its canonical symbolic hash, then (only on a
    miss) by its functional hash. A match among completed evaluations under the same
    evaluator fingerprint, in any experiment of the store, is a *hit*: its result is
    reused. A match with a trial still running in this search is *attached*: it waits
    for that twin instead of running. With ``reevaluate=k`` a hash is evaluated up to
    k times before hits reuse the mean of those evaluations (UFH's answer to noise).

    Args:
      store: the open store.
      fingerprint: the evaluator's fingerprint; only its results are reused.
      reevaluate: evaluations per hash before results are reused.
      hash_options: options of `functional_hash` (``probe``, ``train_steps``, ``digits``).
    """

    def __init__(self, store: Any, fingerprint: str, reevaluate: int = 1,
                 hash_options: dict[str, Any] | None = None) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.reevaluate = reevaluate
        self.hash_options = dict(hash_options or {})
        self.hash_time = 0.0
        self.hashed = 0
        self._running: dict[str, Any] = {}       # hash -> Pending being evaluated
        self._waiting: dict[int, list[Any]] = {}  # twin trial id -> attached Pendings

    @property
    def num_waiting(self) -> int:
        """Trials attached to a running twin."""
        return sum(len(v) for v in self._waiting.values())

    def functional_hash(self, candidate: Any) -> str | None:
        """The candidate's functional hash, or None where it cannot be computed."""
        if not (hasattr(candidate, "build") or "probe" in self.hash_options):
            return None
        start = time.perf_counter()
        try:
            return functional_hash(candidate, fingerprint=self.fingerprint, **self.hash_options)
        except Exception:  # a candidate that cannot even build: its evaluation will say why
            return None
        finally:
            self.hash_time += time.perf_counter() - start
            self.hashed += 1

    def lookup_many(self, items: Sequence[tuple[Any, str] | tuple[Any, str, str | None]]
                    ) -> list[tuple[str, Any, str | None]]:
        """Looks up ``(candidate, sym_hash[, budget_key])`` items proposed together, in order.

        Returns one ``(kind, what, fn_hash)`` per item: ("hit", stored sources),
        ("attach", running twin) or ("miss", None). Their stored evaluations are read in
        one query per budget. A candidate equal to an earlier miss of the same lot (at
        the same budget) is attached to it: its ``what`` is that item's index. Results
        at one budget (``budget_key``, a multi-fidelity rung's) never answer another.
        """
        items = [(it[0], it[1], it[2] if len(it) > 2 else None) for it in items]
        stored: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
        for bk in dict.fromkeys(bk for _, _, bk in items):
            stored[bk] = self.store.evaluations_many(
                self.fingerprint, [sym for _, sym, b in items if b == bk], bk)
        lot: dict[str, int] = {}                 # hash@budget -> index of a miss of this lot
        out: list[tuple[str, Any, str | None]] = []
        for i, (candidate, sym, bk) in enumerate(items):
            kind, what = self._match(_key(sym, bk), None, stored[bk].get(sym, []), lot)
            fn = None
            if kind == "miss":
                fn = self.functional_hash(candidate)
                if fn:
                    kind, what = self._match(
                        _key(sym, bk), _key(fn, bk),
                        self.store.evaluations(self.fingerprint, sym, fn, bk), lot)
            if kind == "miss":
                lot.setdefault(_key(sym, bk), i)
                if fn:
                    lot.setdefault(_key(fn, bk), i)
            out.append((kind, what, fn))
        return out

    def _match(self, sym_hash: str, fn_hash: str | None, done: list[dict[str, Any]],
               lot: dict[str, int]) -> tuple[str, Any]:
        twin = self._running.get(sym_hash) or (self._running.get(fn_hash) if fn_hash else None)
        if twin is None:
            twin = lot.get(sym_hash, lot.get(fn_hash) if fn_hash else None)
        if len(done) >= self.reevaluate:
            return "hit", done[: self.reevaluate]
        if twin is not None and len(done) + 1 >= self.reevaluate:
            return "attach", twin
        return "miss", None

    def launched(self, pending: Any) -> None:
        """Notes that ``pending`` is being evaluated, so twins attach to it."""
        bk = pending.trial.get("budget_key")
        for key in (pending.trial.get("sym_hash"), pending.trial.get("fn_hash")):
            if key:
                self._running.setdefault(_key(key, bk), pending)

    def attach(self, twin: Any, pending: Any) -> None:
        """Makes ``pending`` wait for ``twin``'s result."""
        self._waiting.setdefault(twin.id, []).append(pending)

    def settled(self, pending: Any) -> list[Any]:
        """Forgets a finished evaluation; returns the trials that waited for it."""
        bk = pending.trial.get("budget_key")
        for key in (pending.trial.get("sym_hash"), pending.trial.get("fn_hash")):
            if key and self._running.get(_key(key, bk)) is pending:
                del self._running[_key(key, bk)]
        return self._waiting.pop(pending.id, [])

    @staticmethod
    def hit_outcome(sources: list[dict[str, Any]]) -> Outcome:
        """The outcome of a hit: the mean metrics of the stored evaluations it reuses."""
        keys = set.intersection(*(set(s["metrics"]) for s in sources))
        metrics = {k: sum(s["metrics"][k] for s in sources) / len(sources) for k in sorted(keys)}
        saved = sum(s["wall_time"] or 0.0 for s in sources) / len(sources)
        return Outcome(TrialStatus.CACHED, metrics=metrics, costs=dict(sources[0]["costs"]),
                       wall_time=0.0, cached_from=sources[0]["id"], cache_kind="hit",
                       saved_time=saved)

    @staticmethod
    def twin_outcome(twin: Any, outcome: Outcome) -> Outcome:
        """The outcome of a trial attached to ``twin``, which ended with ``outcome``."""
        if outcome.status != TrialStatus.COMPLETED:
            return Outcome.failed(
                f"its twin trial #{twin.trial['number']} failed: "
                f"{error_summary(outcome.error) or 'no reason given'}",
                wall_time=0.0, cached_from=twin.id, cache_kind="attached")
        return Outcome(TrialStatus.CACHED, metrics=dict(outcome.metrics),
                       costs=dict(outcome.costs), wall_time=0.0, cached_from=twin.id,
                       cache_kind="attached", saved_time=outcome.wall_time or 0.0)


def _key(hash_: str, budget_key: str | None) -> str:
    """A hash as the cache's in-memory maps key it: with the budget, where there is one."""
    return f"{hash_}@{budget_key}" if budget_key else hash_
