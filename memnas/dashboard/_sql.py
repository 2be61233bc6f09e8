"""Column-lean SQL reads of the dashboard (SQLAlchemy Core on the store's engine)."""

from __future__ import annotations

import json
from typing import Any, Iterable

import pandas as pd
import sqlalchemy as sa

from memnas.store._models import ExperimentRow, TrialRow

_T = TrialRow.__table__
_E = ExperimentRow.__table__
ERROR_TAIL = 600
"""Characters of a failed trial's traceback read for the table (its end names the error)."""


def _json(value: Any) -> dict[str, Any]:
    """A JSON column read as text (or already decoded by the driver) as a dict."""
    if value is None:
        return {}
    if isinstance(value, (bytes, str)):
        try:
            out = json.loads(value)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}
    return value if isinstance(value, dict) else {}


def _json_many(values: list[Any]) -> list[dict[str, Any]]:
    """Decodes a column of JSON texts in one ``json.loads`` call (fast for 100k rows)."""
    if all(isinstance(v, str) for v in values):
        try:
            out = json.loads("[" + ",".join(values) + "]")
            return [d if isinstance(d, dict) else {} for d in out]
        except ValueError:
            pass
    return [_json(v) for v in values]


def _text(col: Any) -> Any:
    return sa.cast(col, sa.Text)


def stamp(engine: sa.Engine, exp_id: int) -> tuple:
    """A cheap fingerprint of an experiment's trials that changes when any trial does.

    Used as a cache key: the 100k-row read reruns only when trials were added or
    changed status (counts per status and the latest finish time).
    """
    q = (sa.select(_T.c.status, sa.func.count(), sa.func.max(_T.c.finished_at),
                   sa.func.max(_T.c.id))
         .where(_T.c.experiment_id == exp_id).group_by(_T.c.status).order_by(_T.c.status))
    with engine.connect() as conn:
        return tuple((s, n, str(f), i) for s, n, f, i in conn.execute(q))


def number_range(engine: sa.Engine, exp_id: int) -> tuple[int, int, int] | None:
    """(lowest, highest, count) of an experiment's trial numbers; None without trials."""
    q = sa.select(sa.func.min(_T.c.number), sa.func.max(_T.c.number), sa.func.count()).where(
        _T.c.experiment_id == exp_id)
    with engine.connect() as conn:
        lo, hi, n = conn.execute(q).one()
    return None if not n else (int(lo), int(hi), int(n))


def experiment_times(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    """Per experiment: first start, last finish and total evaluation seconds of its trials."""
    q = (sa.select(_T.c.experiment_id, sa.func.min(_T.c.started_at),
                   sa.func.max(_T.c.finished_at), sa.func.sum(_T.c.wall_time))
         .group_by(_T.c.experiment_id))
    with engine.connect() as conn:
        return {e: {"first_start": a, "last_finish": b, "eval_s": float(w or 0.0)}
                for e, a, b, w in conn.execute(q)}


def best_values(engine: sa.Engine, exp_id: int,
                objectives: dict[str, str]) -> dict[str, float | None]:
    """Best value of each objective among an experiment's completed and cached trials."""
    best: dict[str, float | None] = {k: None for k in objectives}
    if not objectives:
        return best
    aggs = []
    for k, d in objectives.items():
        value = sa.func.coalesce(_T.c.metrics[k].as_float(), _T.c.costs[k].as_float())
        aggs.append(sa.func.max(value) if d == "max" else sa.func.min(value))
    q = sa.select(*aggs).where(_T.c.experiment_id == exp_id,
                               _T.c.status.in_(("completed", "cached")))
    with engine.connect() as conn:
        row = conn.execute(q).first()
    for k, v in zip(objectives, row or ()):
        best[k] = None if v is None or v != v else float(v)
    return best


def value_keys(engine: sa.Engine, exp_id: int,
               sample: int = 1000) -> tuple[list[str], list[str]]:
    """Names of the metrics and of the costs (not also metrics) the first and the latest
    ``sample`` trials recorded, sorted."""
    metrics: set[str] = set()
    costs: set[str] = set()
    base = sa.select(_text(_T.c.metrics), _text(_T.c.costs)).where(
        _T.c.experiment_id == exp_id, _T.c.status.in_(("completed", "cached")))
    with engine.connect() as conn:
        for order in (_T.c.number, _T.c.number.desc()):
            rows = conn.execute(base.order_by(order).limit(sample)).all()
            for d in _json_many([r[0] for r in rows]):
                metrics.update(d)
            for d in _json_many([r[1] for r in rows]):
                costs.update(d)
    return sorted(metrics), sorted(costs - metrics)


def _columns(conn: sa.Connection, q: Any, width: int) -> list[tuple]:
    """Runs ``q`` on the DBAPI cursor (no per-row objects) and returns its columns."""
    # Literal binds: the values are ints and JSON paths the dialect renders itself.
    sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    return list(zip(*rows)) if rows else [()] * width


def trials_frame(engine: sa.Engine, exp_id: int,
                 objectives: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per trial with only the columns the pages draw, ordered by number.

    Metric and cost values are extracted from the JSON by the database (names from
    `value_keys`), so 100k trials read without decoding JSON in Python.

    Args:
      engine: the store's engine.
      exp_id: experiment id.
      objectives: listed first among the value columns.

    Returns:
      The columns of `memnas.dashboard.data.trials_frame` (``number``, ``status``,
      ``summary``, one float column per metric and cost, ``wall_time``, ``attempt``,
      ``cached_from``, ``node``, ``started_at``, ``finished_at``, ``error``) plus ``id``
      and ``cache_kind``; ``attrs["costs"]`` names the cost columns. Candidates, DNA
      and full tracebacks are not read.
    """
    from memnas.dashboard.data import TAIL_COLUMNS, TRIAL_COLUMNS, error_snippet

    metric_names, cost_names = value_keys(engine, exp_id)
    names = list(objectives or {})
    names += [n for n in metric_names + cost_names if n not in names]
    keys = ["id", "number", "status", "summary", "wall_time", "attempt", "cached_from",
            "cache_kind", "node", "started_at", "finished_at"]
    cols = [_T.c.id, _T.c.number, _T.c.status, _T.c.summary, _T.c.wall_time, _T.c.attempt,
            _T.c.cached_from, _T.c.cache_kind, _T.c.node, _text(_T.c.started_at),
            _text(_T.c.finished_at)]
    for n in names:
        m, c = _T.c.metrics[n].as_float(), _T.c.costs[n].as_float()
        cols.append(m if n in metric_names else c if n in cost_names else
                    sa.func.coalesce(m, c))
    q = sa.select(*cols).where(_T.c.experiment_id == exp_id).order_by(_T.c.number)
    err_q = (sa.select(_T.c.id, sa.func.substr(_T.c.error, sa.func.greatest(
        sa.func.length(_T.c.error) - ERROR_TAIL, 1)) if engine.dialect.name != "sqlite" else
        sa.func.substr(_T.c.error, -ERROR_TAIL))
             .where(_T.c.experiment_id == exp_id, _T.c.error.is_not(None)))
    with engine.connect() as conn:
        columns = _columns(conn, q, len(cols))
        errors = dict(conn.execute(err_q).all())
    out = pd.DataFrame({k: list(v) for k, v in zip(keys, columns)}, columns=keys)
    for i, n in enumerate(names):
        out[n] = pd.to_numeric(pd.Series(columns[len(keys) + i], dtype=object),
                               errors="coerce").astype(float)
    snippets = {i: error_snippet(e) for i, e in errors.items()}
    out["error"] = out["id"].map(snippets).fillna("") if snippets else ""
    out["summary"] = out["summary"].fillna("")
    out["wall_time"] = pd.to_numeric(out["wall_time"], errors="coerce").astype(float)
    for k in ("started_at", "finished_at"):
        out[k] = pd.to_datetime(out[k], format="ISO8601", errors="coerce")
    out = out[[*TRIAL_COLUMNS, *names, *TAIL_COLUMNS, "id", "cache_kind"]]
    out.attrs["costs"] = list(cost_names)
    return out


def decision_keys(engine: sa.Engine, exp_id: int, sample: int = 2000) -> list[str]:
    """Names of the decisions the latest ``sample`` trials made, most frequent first."""
    q = (sa.select(_text(_T.c.decisions)).where(_T.c.experiment_id == exp_id)
         .order_by(_T.c.number.desc()).limit(sample))
    with engine.connect() as conn:
        rows = [r[0] for r in conn.execute(q)]
    counts: dict[str, int] = {}
    for d in _json_many(rows):
        for k in d:
            counts[k] = counts.get(k, 0) + 1
    return sorted(counts, key=lambda k: -counts[k])


def decisions_frame(engine: sa.Engine, exp_id: int, names: Iterable[str],
                    every: int = 1) -> pd.DataFrame:
    """Chosen decisions of an experiment's trials, extracted from the JSON in SQL.

    Args:
      engine: the store's engine.
      exp_id: experiment id.
      names: decision names (keys of a trial's ``decisions``).
      every: read only trials whose number is a multiple of ``every`` (a cheap sample).

    Returns:
      Column ``number`` then one column per name; a stored ``"1/3 (32)"`` reads ``"32"``.
    """
    names = list(names)
    cols = [_T.c.decisions[n].as_string() for n in names]
    q = sa.select(_T.c.number, *cols).where(_T.c.experiment_id == exp_id)
    if every > 1:
        q = q.where(_T.c.number % every == 0)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(_T.c.number)).all()
    columns = list(zip(*rows)) if rows else [()] * (len(names) + 1)
    frame = pd.DataFrame({"number": pd.array(columns[0], dtype="int64")})
    for i, n in enumerate(names):
        raw = pd.Series(columns[i + 1], dtype="string")
        value = raw.str.extract(r"^\d+/\d+ \((.*)\)$", expand=False)
        frame[n] = value.fillna(raw)
    return frame


def trial_row(engine: sa.Engine, exp_id: int | None = None, number: int | None = None,
              trial_id: int | None = None) -> dict[str, Any] | None:
    """Every column of one trial (by experiment and number, or by id), plus its
    experiment's name as ``experiment``; None when there is no such trial."""
    q = sa.select(_T, _E.c.name.label("experiment")).join(_E, _E.c.id == _T.c.experiment_id)
    if trial_id is not None:
        q = q.where(_T.c.id == trial_id)
    else:
        q = q.where(_T.c.experiment_id == exp_id, _T.c.number == number)
    with engine.connect() as conn:
        row = conn.execute(q).mappings().first()
    return None if row is None else dict(row)
