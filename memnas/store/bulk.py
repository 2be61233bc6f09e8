"""Bulk writes for imports and benchmarks: many trial rows and their curves in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import sqlalchemy as sa

from memnas.store._models import CurvePointRow, TrialRow

if TYPE_CHECKING:
    from memnas.store._store import Store

__all__ = ["insert_trials"]

CHUNK = 5000
"""Rows per INSERT statement."""


def insert_trials(store: "Store", exp_id: int, rows: Sequence[Mapping[str, Any]],
                  curves: Mapping[int, Sequence[Mapping[str, Any]]] | None = None
                  ) -> dict[int, int]:
    """Inserts finished trial rows of experiment ``exp_id`` as they are, in one
    transaction: for filling a store quickly (synthetic benchmarks, imports), not for a
    running search (its driver numbers and writes trials through `Store.add_trial`).

    Args:
      store: the store, opened for writing.
      exp_id: the experiment's id.
      rows: trial columns (``number``, ``status``, ``dna``, ``decisions``, ``candidate``,
        ``sym_hash``, ``metrics``, ``costs``, timestamps...), numbers unique in the
        experiment. ``cached_from`` may name a trial of ``rows`` by its number as
        ``cached_from_number``; it is turned into that trial's id.
      curves: curve points ``{"step", "name", "value"}`` per trial number.

    Returns:
      ``{number: trial id}`` of the rows inserted.
    """
    table = TrialRow.__table__
    numbers = [int(r["number"]) for r in rows]
    with store.engine.begin() as conn:
        for i in range(0, len(rows), CHUNK):
            conn.execute(sa.insert(table), [
                {k: v for k, v in r.items() if k != "cached_from_number"} | {
                    "experiment_id": exp_id} for r in rows[i:i + CHUNK]])
        q = sa.select(table.c.number, table.c.id).where(table.c.experiment_id == exp_id)
        ids = {n: i for n, i in conn.execute(q)}
        links = [{"_id": ids[int(r["number"])], "_source": ids[int(r["cached_from_number"])]}
                 for r in rows if r.get("cached_from_number") is not None]
        if links:
            conn.execute(sa.update(table).where(table.c.id == sa.bindparam("_id"))
                         .values(cached_from=sa.bindparam("_source")), links)
        points = [{"trial_id": ids[n], "step": int(p["step"]), "name": str(p["name"]),
                   "value": float(p["value"])}
                  for n, ps in (curves or {}).items() for p in ps]
        for i in range(0, len(points), CHUNK):
            conn.execute(sa.insert(CurvePointRow.__table__), points[i:i + CHUNK])
    return {n: ids[n] for n in numbers}
