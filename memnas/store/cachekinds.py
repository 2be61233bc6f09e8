"""What each trial the equivalence cache answered matched: duplicate, canonical, functional."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import sqlalchemy as sa

from memnas.store._models import TrialRow
from memnas.store.reader import _columns_of

if TYPE_CHECKING:
    from memnas.store._store import Store

__all__ = ["CACHE_KINDS", "KIND_NOTES", "cache_kind_counts", "cache_kinds", "proposed"]

_T = TrialRow.__table__
CACHE_KINDS = ("duplicate", "canonical", "functional")
"""Kinds of cache matches (`memnas.hashing.match_kind`); else ``unknown``: a hit stored
before kinds were (``cache_kind`` "hit"), or an attached trial whose twin is gone."""
KIND_NOTES = {"duplicate": "the same candidate", "canonical": "the same canonical form",
              "functional": "the same functional hash only", "unknown": "kind not recorded"}
"""What a cached trial of each kind shares with the trial whose result it reused."""


def _same_budget(a: Any, b: Any, store: "Store") -> Any:
    """Rows ``a`` and ``b`` at one budget (an older store, read only, has no budgets)."""
    if "budget_key" not in _columns_of(store):
        return sa.true()
    return sa.func.coalesce(a.c.budget_key, "") == sa.func.coalesce(b.c.budget_key, "")


def cache_kinds(store: "Store", exp_id: int,
                ids: Iterable[int] | None = None) -> dict[int, tuple[str, str, str]]:
    """``{trial id: (status, how, kind)}`` of the trials the equivalence cache answered
    (or attached to a twin that failed), only ``ids`` if given: ``how`` is "hit" or
    "attached"; a hit's kind is its ``cache_kind``, an attached trial's follows from its
    row by the rule of `memnas.hashing.match_kind`: the same candidate JSON as its twin or
    an earlier trial of the experiment, else its twin's symbolic hash, else functional."""
    src, e, stored = _T.alias("src"), _T.alias("e"), _T.c.cache_kind
    seen = sa.exists().where(e.c.experiment_id == _T.c.experiment_id, e.c.number < _T.c.number,
                             e.c.sym_hash == _T.c.sym_hash, e.c.candidate == _T.c.candidate,
                             _same_budget(e, _T, store))
    kind = sa.case((stored.in_(CACHE_KINDS), stored), (stored != "attached", "unknown"),
                   (src.c.id.is_(None), "unknown"),
                   (sa.or_(_T.c.candidate == src.c.candidate, seen), "duplicate"),
                   (_T.c.sym_hash == src.c.sym_hash, "canonical"), else_="functional")
    q = (sa.select(_T.c.id, _T.c.status, stored, kind)
         .select_from(_T.outerjoin(src, src.c.id == _T.c.cached_from))
         .where(_T.c.experiment_id == exp_id, stored.is_not(None)))
    if ids is not None:
        q = q.where(_T.c.id.in_([int(i) for i in ids]))
    with store.engine.connect() as conn:
        return {i: (st, "attached" if how == "attached" else "hit", k)
                for i, st, how, k in conn.execute(q)}


def cache_kind_counts(store: "Store", exp_id: int) -> dict[str, dict[str, int]]:
    """Cached trials by how and kind (`cache_kinds`): ``{"hit"|"attached": {kind: n}}``,
    every kind of `CACHE_KINDS` present, ``unknown`` only where there are such."""
    out = {how: dict.fromkeys(CACHE_KINDS, 0) for how in ("hit", "attached")}
    for status, how, kind in cache_kinds(store, exp_id).values():
        if status == "cached":
            out[how][kind] = out[how].get(kind, 0) + 1
    return out


def proposed(store: "Store", exp_id: int, sym_hashes: Iterable[str],
             budget_key: str | None = None) -> set[str]:
    """Candidate JSONs of an experiment's trials (any status) with these symbolic hashes
    at this budget: the candidates a dedup of its proposals has seen."""
    q = sa.select(_T.c.candidate).distinct().where(
        _T.c.experiment_id == exp_id, _T.c.sym_hash.in_(sorted(set(sym_hashes))),
        sa.func.coalesce(_T.c.budget_key, "") == (budget_key or ""))
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(q)}
