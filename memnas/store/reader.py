"""The store's one trial reader: trial tables, decisions, stamps and twins, in lean SQL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from memnas.records import WITH_RESULT, error_summary, is_supernet
from memnas.store._models import ExperimentRow, TrialRow
from memnas.store.decisions import (DECISION_PREFIX, decision_column, decision_table, key_order,
                                    readable_decisions)
from memnas.store.roles import describe_supernets, not_supernet, supernet_summary
from memnas.store.rungs import VIOLATION, budget_value, not_violating, rung_columns
from memnas.store.twins import fold_twins

if TYPE_CHECKING:
    import pandas as pd

    from memnas.store._store import Store

__all__ = ["DECISION_PREFIX", "DETAIL_COLUMNS", "LEAN_COLUMNS", "TAIL_COLUMNS", "TRIAL_COLUMNS",
           "best_values", "decision_keys",
           "decisions_frame", "experiment_times", "fold_twins", "number_range",
           "readable_decisions", "stamp", "status_counts", "trial_row", "trials_frame",
           "value_keys"]

_T = TrialRow.__table__
_E = ExperimentRow.__table__
_DONE = tuple(sorted(s.value for s in WITH_RESULT))
TRIAL_COLUMNS = ("number", "status", "summary")
"""The first columns of `trials_frame`; its value columns follow them."""
TAIL_COLUMNS = ("budget", "parent", "wall_time", "attempt", "cached_from", "node", "started_at",
                "finished_at", "error")
"""The columns after the values (and, in detail, the decisions) of `trials_frame`."""
DETAIL_COLUMNS = ("seed", "sym_hash", "fn_hash", "cache_kind", "saved_time", "created_at", "id")
"""The last columns of a detailed `trials_frame` (`memnas.Result.trials`)."""
LEAN_COLUMNS = ("id", "cache_kind", "sym_hash")
"""The last columns of a lean `trials_frame` (the dashboard's): ids and hashes, not shown."""
_DERIVED = ("budget", "parent", "error")  # read apart (`rung_columns`, `_error_tails`)
ERROR_TAIL = 600
"""Characters of a failed trial's traceback a lean frame reads (its end names the error)."""
SNIPPET_WIDTH = 120
"""Characters of the error line a lean frame shows."""


def _text(col: Any) -> Any:
    return sa.cast(col, sa.Text)


def _json(value: Any) -> dict[str, Any]:
    """A JSON column read as text (or already decoded by the driver) as a dict."""
    if isinstance(value, (bytes, str)):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _json_many(values: Sequence[Any]) -> list[dict[str, Any]]:
    """Decodes a column of JSON texts in one ``json.loads`` call (fast for 100k rows)."""
    if values and all(isinstance(v, str) for v in values):
        try:
            return [d if isinstance(d, dict) else {} for d in json.loads(f"[{','.join(values)}]")]
        except ValueError:
            pass
    return [_json(v) for v in values]


def _columns(conn: sa.Connection, q: Any, width: int) -> list[tuple]:
    """Runs ``q`` on the DBAPI cursor (no per-row objects) and returns its columns."""
    # Literal binds: the values are ints, statuses and JSON paths the dialect renders itself.
    sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    return list(zip(*rows)) if rows else [()] * width


def stamp(store: "Store", exp_id: int) -> tuple:
    """A cheap fingerprint of an experiment's trials that changes when any trial does
    (counts per status, latest finish, highest id): a cache key for `trials_frame`."""
    q = (sa.select(_T.c.status, sa.func.count(), sa.func.max(_T.c.finished_at),
                   sa.func.max(_T.c.id))
         .where(_T.c.experiment_id == exp_id).group_by(_T.c.status).order_by(_T.c.status))
    with store.engine.connect() as conn:
        return tuple((s, n, str(f), i) for s, n, f, i in conn.execute(q))


def status_counts(store: "Store", exp_id: int) -> dict[str, int]:
    """Number of an experiment's trials per status."""
    q = (sa.select(_T.c.status, sa.func.count()).where(_T.c.experiment_id == exp_id)
         .group_by(_T.c.status))
    with store.engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(q)}


def number_range(store: "Store", exp_id: int) -> tuple[int, int, int] | None:
    """(lowest, highest, count) of an experiment's trial numbers; None without trials."""
    q = sa.select(sa.func.min(_T.c.number), sa.func.max(_T.c.number), sa.func.count()).where(
        _T.c.experiment_id == exp_id)
    with store.engine.connect() as conn:
        lo, hi, n = conn.execute(q).one()
    return None if not n else (int(lo), int(hi), int(n))


def experiment_times(store: "Store") -> dict[int, dict[str, Any]]:
    """Per experiment id: first start, last finish and total evaluation seconds of its trials."""
    q = (sa.select(_T.c.experiment_id, sa.func.min(_T.c.started_at),
                   sa.func.max(_T.c.finished_at), sa.func.sum(_T.c.wall_time))
         .group_by(_T.c.experiment_id))
    with store.engine.connect() as conn:
        return {e: {"first_start": a, "last_finish": b, "eval_s": float(w or 0.0)}
                for e, a, b, w in conn.execute(q)}


def best_values(store: "Store", exp_id: int,
                objectives: Mapping[str, str]) -> dict[str, float | None]:
    """Best value of each objective among an experiment's candidates with a result (no
    supernet runs: `memnas.store.roles`; none that broke a constraint: `memnas.store.rungs`)."""
    best: dict[str, float | None] = {k: None for k in objectives}
    if not objectives:
        return best
    aggs = []
    for k, d in objectives.items():
        value = sa.func.coalesce(_T.c.metrics[k].as_float(), _T.c.costs[k].as_float())
        aggs.append(sa.func.max(value) if d == "max" else sa.func.min(value))
    q = sa.select(*aggs).where(_T.c.experiment_id == exp_id, _T.c.status.in_(_DONE),
                               not_supernet(_T.c.metrics), not_violating(_T.c.costs))
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    for k, v in zip(objectives, row or ()):
        best[k] = None if v is None or v != v else float(v)
    return best


def value_keys(store: "Store", exp_id: int, sample: int = 1000) -> tuple[list[str], list[str]]:
    """Names of the metrics and of the costs (not also metrics) that the first and the
    latest ``sample`` trials with a result recorded (and ``constraint_violation`` if any
    trial has it: it rules trials out of bests and fronts), sorted."""
    metrics: set[str] = set()
    costs: set[str] = set()
    base = sa.select(_text(_T.c.metrics), _text(_T.c.costs)).where(
        _T.c.experiment_id == exp_id, _T.c.status.in_(_DONE))
    with store.engine.connect() as conn:
        for order in (_T.c.number, _T.c.number.desc()):
            rows = conn.execute(base.order_by(order).limit(sample)).all()
            for d in _json_many([r[0] for r in rows]):
                metrics.update(d)
            for d in _json_many([r[1] for r in rows]):
                costs.update(d)
        if VIOLATION not in costs and conn.execute(sa.select(_T.c.id).where(
                _T.c.experiment_id == exp_id, _T.c.costs[VIOLATION].as_float().is_not(None))
                .limit(1)).first() is not None:
            costs.add(VIOLATION)
    return sorted(metrics), sorted(costs - metrics)


def trials_frame(store: "Store", exp_id: int, objectives: Mapping[str, str] | None = None,
                 detail: bool = False) -> "pd.DataFrame":
    """One row per trial of an experiment, ordered by number: the table every view reads.

    Metric and cost values are extracted from the JSON by the database (names from
    `value_keys`), so 100k trials read without decoding their values in Python (a failed
    trial's values, which may be NaN, are decoded here).

    Args:
      store: the store.
      exp_id: the experiment's id.
      objectives: listed first among the value columns.
      detail: everything `memnas.Result.trials` shows, decisions included; else only
        what the dashboard draws (no decisions, the error's last line).

    Returns:
      `TRIAL_COLUMNS`; with ``detail``, ``decisions`` (the stored dict, readable); one
      float column per metric and cost (objectives first); with ``detail``, one column
      per decision (`readable_decisions`: named by its path, holding its label, None
      where inactive; prefixed with `DECISION_PREFIX` if another column has the name);
      `TAIL_COLUMNS` (``budget``: a multi-fidelity trial's budget as one value,
      `memnas.store.rungs.budget_column`; ``parent``: the number of the trial whose
      checkpoint it continued, else NA; ``error``: the traceback with ``detail``, else its
      last line); then `DETAIL_COLUMNS` or `LEAN_COLUMNS`. ``attrs`` name the ``values``,
      the ``costs`` and the ``decisions`` columns, and the ``budget_unit`` (or None).
    """
    import pandas as pd

    metric_names, cost_names = value_keys(store, exp_id)
    names = list(objectives or {})
    names += [n for n in metric_names + cost_names if n not in names]
    extra = DETAIL_COLUMNS if detail else LEAN_COLUMNS
    keys = [*TRIAL_COLUMNS, *[k for k in TAIL_COLUMNS if k not in _DERIVED], *extra]
    done = _T.c.status.in_(_DONE)
    cols = [_T.c[k] if k not in ("started_at", "finished_at", "created_at") else _text(_T.c[k])
            for k in keys]
    if detail:
        keys += ["decisions", "error"]
        cols += [_text(_T.c.decisions), _T.c.error]
    rung = [k for k in ("budget", "parent_id") if k in _columns_of(store)]  # older: absent
    keys += rung
    cols += [_text(_T.c[k]) if k == "budget" else _T.c[k] for k in rung]
    for n in names:
        m, c = _T.c.metrics[n].as_float(), _T.c.costs[n].as_float()
        value = m if n in metric_names else c if n in cost_names else sa.func.coalesce(m, c)
        cols.append(sa.case((done, value)))  # failed trials' JSON may hold NaN: read below
    where = _T.c.experiment_id == exp_id
    q = sa.select(*cols).where(where).order_by(_T.c.number)
    rest = sa.select(_T.c.id, _text(_T.c.metrics), _text(_T.c.costs)).where(
        where, ~done, _T.c.status != "pending")
    with store.engine.connect() as conn:
        columns = _columns(conn, q, len(cols))
        others = conn.execute(rest).all()
        errors = {} if detail else dict(conn.execute(_error_tails(conn, where)).all())
    out = pd.DataFrame({k: list(v) for k, v in zip(keys, columns)}, columns=keys)
    for i, n in enumerate(names):
        out[n] = pd.to_numeric(pd.Series(columns[len(keys) + i], dtype=object),
                               errors="coerce").astype(float)
    _fill_other_values(out, others, names)
    unit = rung_columns(out)
    if not detail:
        snippets = {i: _snippet(e) for i, e in errors.items()}
        out["error"] = out["id"].map(snippets).fillna("") if snippets else ""
    out["summary"] = out["summary"].fillna("")
    describe_supernets(store, out)  # a supernet run's summary says so, with its alphas
    for k in ("wall_time", "saved_time"):
        if k in out:
            out[k] = pd.to_numeric(out[k], errors="coerce").astype(float)
    for k in ("started_at", "finished_at", "created_at"):
        if k in out:
            out[k] = pd.to_datetime(out[k], format="ISO8601", errors="coerce")
    decided: list[str] = []
    if detail:
        stored = [readable_decisions(d) for d in _json_many(list(out["decisions"]))]
        out["decisions"] = stored
        taken = {*TRIAL_COLUMNS, "decisions", *names, *TAIL_COLUMNS, *extra}
        order = key_order(stored)
        decided = [decision_column(k, taken) for k in order]
        out = pd.concat([out, decision_table(stored, order, decided, out.index)], axis=1)
    head = [*TRIAL_COLUMNS, *(["decisions"] if detail else [])]
    out = out[[*head, *names, *decided, *TAIL_COLUMNS, *extra]]
    out.attrs.update(values=list(names), costs=list(cost_names), decisions=decided,
                     budget_unit=unit)
    return out


def _columns_of(store: "Store") -> set[str]:
    """Names of the trial columns the store has (a read-only older store lacks the newest)."""
    return {c.name for c in getattr(store, "_trial_cols", None) or _T.c}


def _error_tails(conn: sa.Connection, where: Any) -> Any:
    error = _T.c.error
    tail = sa.func.substr(error, -ERROR_TAIL) if conn.dialect.name == "sqlite" else \
        sa.func.substr(error, sa.func.greatest(sa.func.length(error) - ERROR_TAIL, 1))
    return sa.select(_T.c.id, tail).where(where, error.is_not(None))


def _snippet(error: str | None) -> str:
    text = error_summary(error)
    return text if len(text) <= SNIPPET_WIDTH else text[:SNIPPET_WIDTH - 1] + "…"


def _fill_other_values(out: "pd.DataFrame", rows: list[tuple], names: list[str]) -> None:
    """Values of trials without a result (a failed trial may keep what it reported)."""
    if not rows or not names:
        return
    where = {i: k for k, i in enumerate(out["id"])}
    found: dict[str, tuple[list[int], list[float]]] = {n: ([], []) for n in names}
    for trial_id, metrics, costs in rows:
        values = {**_json(costs), **_json(metrics)}
        for n, v in values.items():
            if n in found and isinstance(v, (int, float)) and trial_id in where:
                found[n][0].append(where[trial_id])
                found[n][1].append(float(v))
    for n, (at, values) in found.items():
        if at:
            column = out[n].to_numpy(dtype=float, copy=True)
            column[at] = values
            out[n] = column


def decision_keys(store: "Store", exp_id: int, sample: int = 2000) -> list[str]:
    """Readable names of the decisions the latest ``sample`` trials made, most frequent first."""
    q = (sa.select(_text(_T.c.decisions)).where(_T.c.experiment_id == exp_id)
         .order_by(_T.c.number.desc()).limit(sample))
    with store.engine.connect() as conn:
        rows = [r[0] for r in conn.execute(q)]
    dicts = [readable_decisions(d) for d in _json_many(rows)][::-1]
    counts: dict[str, int] = {k: 0 for k in key_order(dicts)}
    for d in dicts:
        for k in d:
            counts[k] += 1
    return sorted(counts, key=lambda k: -counts[k])


def decisions_frame(store: "Store", exp_id: int, names: Iterable[str] | None = None,
                    every: int = 1, ids: Iterable[int] | None = None) -> "pd.DataFrame":
    """Readable decisions of an experiment's trials (`readable_decisions`).

    Args:
      store: the store.
      exp_id: experiment id.
      names: the decisions wanted (None: every one any of the trials made).
      every: read only trials whose number is a multiple of ``every`` (a cheap sample).
      ids: read only these trials (by id), e.g. a page of a table.

    Returns:
      Column ``number``, then one column per decision holding its label (None where
      the trial did not make it), ordered by number.
    """
    import pandas as pd

    q = sa.select(_T.c.number, _text(_T.c.decisions)).where(_T.c.experiment_id == exp_id)
    if every > 1:
        q = q.where(_T.c.number % every == 0)
    if ids is not None:
        q = q.where(_T.c.id.in_([int(i) for i in ids]))
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(_T.c.number)).all()
    dicts = [readable_decisions(d) for d in _json_many([r[1] for r in rows])]
    keys = list(names) if names is not None else key_order(dicts)
    frame = decision_table(dicts, keys, keys, pd.RangeIndex(len(rows)))
    frame.insert(0, "number", pd.array([r[0] for r in rows], dtype="int64"))
    return frame


def trial_row(store: "Store", exp_id: int | None = None, number: int | None = None,
              trial_id: int | None = None) -> dict[str, Any] | None:
    """Every column of one trial (by experiment and number, or by id), its decisions
    readable, plus its experiment's name as ``experiment``; None when there is none.

    Its promotions too: ``parent`` (``{"number", "budget"}`` of the trial whose checkpoint
    it continued, `memnas.store.rungs.budget_value`; None) and ``continued_by`` (a list of
    those of the trials that continued its checkpoint at a higher budget)."""
    have = _columns_of(store)
    q = sa.select(*[c for c in _T.c if c.name in have], _E.c.name.label("experiment")).join(
        _E, _E.c.id == _T.c.experiment_id)
    if trial_id is not None:
        q = q.where(_T.c.id == trial_id)
    else:
        q = q.where(_T.c.experiment_id == exp_id, _T.c.number == number)
    with store.engine.connect() as conn:
        row = conn.execute(q).mappings().first()
        if row is None:
            return None
        out = {**{c.name: None for c in _T.c}, **row}
        link = [] if "parent_id" not in have else conn.execute(
            sa.select(_T.c.id, _T.c.number, _T.c.budget).where(
                (_T.c.id == out["parent_id"]) | (_T.c.parent_id == out["id"]))
            .order_by(_T.c.number)).all()
    rungs = {i: {"number": n, "budget": budget_value(_json(b))} for i, n, b in link}
    out["parent"] = rungs.pop(out["parent_id"], None)
    out["continued_by"] = list(rungs.values())
    out["decisions"] = readable_decisions(_json(out.get("decisions")))
    if is_supernet(_json(out.get("metrics"))):
        out["summary"] = supernet_summary(store.load_artifact(out["id"], "output"))
    return out
