"""The SQL store: opens a URL (its schema checked or upgraded), reads and writes records."""

from __future__ import annotations

import datetime as _dt
import os
import random
import time
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from memnas.errors import StoreError
from memnas.store import artifacts as _artifacts
from memnas.store._models import ArtifactRow, CurvePointRow, ExperimentRow, TrialRow, _now
from memnas.store._claims import ExperimentClaims
from memnas.store._queries import CacheQueries
from memnas.store._schema import open_schema
from memnas.store.patience import make_patient
from memnas.store._statements import (_artifact_row, _put_artifact, _retryable, _row_dict,
                                      _sql, _sqlite_pragmas, _sqlite_read_pragmas,
                                      sqlite_busy_timeout_s)

DEFAULT_URL = "sqlite:///memnas.db"
_WRITE_RETRIES = 20


class Store(CacheQueries, ExperimentClaims):
    """A memnas store at a SQLAlchemy URL (SQLite file by default, PostgreSQL for clusters).

    Opening a store creates its tables if the database is empty and checks the schema
    version otherwise: an older store is upgraded by its migrations (read as it is when
    opened read-only), a newer one is refused (see `memnas.store._schema`). All reads
    return plain dicts, so callers never hold ORM objects.

    Thread-safety: one Store may be shared by threads of one process; each call opens
    its own session. Only the driver of an experiment writes its trial rows.

    Args:
      url: SQLAlchemy URL, e.g. ``sqlite:///memnas.db`` or
        ``postgresql+psycopg://user:pw@host/db``. A bare file path means SQLite.
      read_only: open without writing anything: no tables created, no upgrade (the
        dashboard, ``memnas show``).

    Raises:
      StoreError: the URL is malformed, the database is unreachable, or its schema
        is newer than this memnas's (or older than any it can upgrade).
    """

    def __init__(self, url: str = DEFAULT_URL, read_only: bool = False):
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except Exception:
            raise StoreError(f"store URL {url!r} is not a valid SQLAlchemy URL "
                             "(expected e.g. sqlite:///memnas.db)") from None
        url = self.shown_url = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database or ""
            if db and db != ":memory:":
                folder = os.path.dirname(os.path.abspath(db))
                if not os.path.isdir(folder):
                    raise StoreError(f"cannot open store {url!r}: folder {folder!r} does not exist")
                if read_only and not os.path.exists(db):
                    raise StoreError(f"cannot open store {url!r}: file {db!r} does not exist")
            kwargs["connect_args"] = {"timeout": sqlite_busy_timeout_s(),
                                      "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
            if parsed.get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except Exception as e:
            raise StoreError(f"cannot open store {url!r}: {_one_line(e)}") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect",
                         _sqlite_read_pragmas if read_only else _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.patience_s = 0.0   # seconds calls wait out an outage (memnas.store.patience)
        self.gave_up = False
        self.outages = self.retries = 0
        self._locks_rows = parsed.get_backend_name() != "sqlite"  # SELECT ... FOR UPDATE
        try:
            # The first stores lack the artifacts table; read-only, they are read as they are.
            self._has_artifacts = "artifacts" in open_schema(self.engine, url, read_only)
            # An older store read as it is may lack the newest trial columns: read the
            # columns it has, the others as None.
            self._trial_cols = list(TrialRow.__table__.c)
            if read_only:
                have = {c["name"] for c in sa.inspect(self.engine).get_columns("trials")}
                self._trial_cols = [c for c in self._trial_cols if c.name in have]
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot open store {url!r}: {_one_line(e)}") from None

    def session(self) -> Session:
        """A new ORM session (for advanced queries)."""
        return self._session()

    # ---- experiments ------------------------------------------------------------
    def create_experiment(self, name: str, *, space: dict, space_hash: str, algorithm: dict,
                          evaluator: dict, objectives: dict, config: dict,
                          fingerprint: str = "", driver: str | None = None) -> int:
        """Adds an experiment row and returns its id.

        With ``driver``, the row is created held by that driver (running, with a
        heartbeat): creating is claiming (see `claim_experiment`).

        Raises:
          StoreError: an experiment of that name exists already (or was created by
            another process at this moment).
        """
        exists = StoreError(f"experiment {name!r} already exists in {self.shown_url!r}")
        held = dict(status="running", driver=driver, heartbeat_at=_now()) if driver \
            else dict(status="created")
        try:  # the insert alone: on SQLite a read before it could not wait for the lock
            with self._session.begin() as s:
                row = ExperimentRow(name=name, space=space,
                                    space_hash=space_hash, algorithm=algorithm,
                                    evaluator=evaluator, objectives=objectives, config=config,
                                    fingerprint=fingerprint, **held)
                s.add(row)
                s.flush()
                return row.id
        except sa.exc.IntegrityError:
            if self.experiment(name) is None:
                raise
            raise exists from None  # the unique name: inserted by another process just now

    def experiment(self, name: str) -> dict[str, Any] | None:
        """The experiment row as a dict, or None if there is none of that name."""
        with self._session() as s:
            row = s.scalar(select(ExperimentRow).where(ExperimentRow.name == name))
            return None if row is None else _row_dict(row)

    def require_experiment(self, name: str) -> dict[str, Any]:
        """Like `experiment`, but raises a StoreError naming what exists."""
        exp = self.experiment(name)
        if exp is None:
            names = [e["name"] for e in self.experiments()]
            listed = ", ".join(repr(n) for n in names[:10]) or "none"
            raise StoreError(f"no experiment named {name!r} in {self.shown_url!r} (found: {listed})")
        return exp

    def update_experiment(self, exp_id: int, **fields: Any) -> None:
        """Sets fields (status, config, ...) of an experiment."""
        with self._session.begin() as s:
            row = s.get(ExperimentRow, exp_id)
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = _now()

    def experiments(self) -> list[dict[str, Any]]:
        """All experiments with trial counts per status, newest first."""
        with self._session() as s:
            rows = s.scalars(select(ExperimentRow).order_by(ExperimentRow.id.desc())).all()
            counts = s.execute(
                select(TrialRow.experiment_id, TrialRow.status, func.count())
                .group_by(TrialRow.experiment_id, TrialRow.status)).all()
        by_exp: dict[int, dict[str, int]] = {}
        for exp_id, status, n in counts:
            by_exp.setdefault(exp_id, {})[status] = n
        out = []
        for row in rows:
            d = _row_dict(row)
            c = by_exp.get(row.id, {})
            d["counts"] = c
            d["num_trials"] = sum(c.values())
            out.append(d)
        return out

    # ---- trials ----------------------------------------------------------------
    def add_trial(self, exp_id: int, derive: Callable[[int], dict[str, Any]] | None = None,
                  input_artifact: dict[str, Any] | None = None,
                  **fields: Any) -> tuple[int, int]:
        """Inserts a trial row numbered one past the highest; returns (id, number).

        Args:
          exp_id: the experiment's id.
          derive: optional ``number -> fields`` for fields that depend on the number
            chosen (a trial's seed), written in the same insert.
          input_artifact: optional input artifact (see `save_artifact`), stored in the
            same transaction, so no trial is ever stored without it.
          **fields: the row's other columns.
        """
        more = (lambda i, number, ids: derive(number)) if derive else None
        trial_id, number, _ = self.add_trials(exp_id, [fields], more, input_artifact)[0]
        return trial_id, number

    def add_trials(self, exp_id: int, rows: Sequence[dict[str, Any]],
                   derive: Callable[[int, int, list[int]], dict[str, Any]] | None = None,
                   input_artifact: dict[str, Any] | None = None,
                   ) -> list[tuple[int, int, dict[str, Any]]]:
        """Inserts trial rows numbered on from the highest, in one transaction.

        Safe under concurrent writers: on PostgreSQL the experiment row is locked while
        numbers are chosen; on any backend a clash on the (experiment, number) key or
        a busy database is retried with jittered back-off, as Optuna does. No ORM
        objects: this is on the driver's path for every trial.

        Args:
          exp_id: the experiment's id.
          rows: the rows' columns, in the order they are numbered.
          derive: optional ``(index, number, ids of the rows before) -> fields`` for
            fields that depend on the numbers and ids chosen (a seed; a link to an
            earlier row of the lot), written in the same insert.
          input_artifact: optional input artifact of the last row (see `save_artifact`).

        Returns:
          ``(id, number, derived fields)`` of each row, in order.
        """
        sql = _sql()
        artifact = None if input_artifact is None else _artifact_row("input", input_artifact)
        for attempt in range(_WRITE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    if self._locks_rows:
                        conn.execute(sql.lock_experiment, {"exp_id": exp_id})
                    n = conn.execute(sql.max_number, {"exp_id": exp_id}).scalar()
                    number = 0 if n is None else n + 1
                    ids: list[int] = []
                    out = []
                    for i, fields in enumerate(rows):
                        extra = derive(i, number + i, ids) if derive else {}
                        values = {**fields, **extra, "experiment_id": exp_id,
                                  "number": number + i}
                        ids.append(conn.execute(sql.insert_trial,
                                                values).inserted_primary_key[0])
                        out.append((ids[-1], number + i, extra))
                    if artifact is not None:
                        _put_artifact(conn, ids[-1], artifact)
                    return out
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as e:
                if attempt == _WRITE_RETRIES - 1 or not _retryable(e):
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def heartbeat(self, exp_id: int, trial_ids: Iterable[int], driver: str) -> None:
        """Marks the driver and its running trials alive, in one transaction."""
        now = _now()
        with self._session.begin() as s:
            s.execute(sa.update(ExperimentRow).where(ExperimentRow.id == exp_id)
                      .values(heartbeat_at=now, driver=driver))
            ids = list(trial_ids)
            if ids:
                s.execute(sa.update(TrialRow).where(TrialRow.id.in_(ids)).values(heartbeat_at=now))

    def update_trial(self, trial_id: int, curve: Sequence[dict] = (), **fields: Any) -> None:
        """Sets fields of a trial and appends curve points, in one transaction."""
        self.update_trials([(trial_id, curve, fields)])

    def update_trials(self, updates: Sequence[tuple[int, Sequence[dict], dict[str, Any]]],
                      output_artifacts: Sequence[tuple[int, dict[str, Any]]] = (),
                      feedback: Sequence[tuple[int, int, int]] = ()) -> None:
        """Applies `update_trial` to several ``(trial_id, curve, fields)`` in one transaction.

        The driver stores a batch of finished trials so: one commit instead of one per trial.
        ``output_artifacts`` (``(trial_id, payload)``, see `save_artifact`) are written in
        the same transaction, so a completed trial is never stored without its artifact;
        so are ``feedback`` rows ``(experiment_id, trial_id, seq)`` (see `feedback_order`).

        Raises:
          StoreError: a trial id that is not in the store (nothing is written then).
        """
        sql = _sql()
        artifacts = [(tid, _artifact_row("output", payload)) for tid, payload in output_artifacts]
        with self.engine.begin() as conn:
            points: list[dict[str, Any]] = []
            for trial_id, curve, fields in updates:
                if fields:
                    done = conn.execute(sql.update_trial,
                                        {**fields, "_trial_id": trial_id}).rowcount
                else:
                    done = conn.execute(sql.trial_exists, {"_trial_id": trial_id}).first()
                if not done:
                    raise StoreError(f"no trial with id {trial_id} in {self.shown_url!r}")
                latest = {}  # last value wins for a repeated (step, name)
                for p in curve:
                    latest[(int(p["step"]), str(p["name"]))] = float(p["value"])
                points.extend({"trial_id": trial_id, "step": k[0], "name": k[1], "value": v}
                              for k, v in latest.items())
            if points:
                conn.execute(sql.insert_points, points)
            for trial_id, row in artifacts:
                _put_artifact(conn, trial_id, row)
            if feedback:
                conn.execute(sql.insert_feedback, [
                    {"experiment_id": e, "trial_id": t, "seq": q} for e, t, q in feedback])

    def clear_curve(self, trial_id: int) -> None:
        """Deletes a trial's curve points (before it is run again)."""
        with self._session.begin() as s:
            s.execute(sa.delete(CurvePointRow).where(CurvePointRow.trial_id == trial_id))

    def trials(self, exp_id: int, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The trial rows of an experiment ordered by number."""
        q = select(*self._trial_cols).where(TrialRow.experiment_id == exp_id)
        if statuses is not None:
            q = q.where(TrialRow.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [self._trial_dict(r) for r in conn.execute(q.order_by(TrialRow.number))
                    .mappings()]

    def trial(self, exp_id: int, number: int) -> dict[str, Any] | None:
        """One trial row by its number within the experiment."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*self._trial_cols).where(
                TrialRow.experiment_id == exp_id, TrialRow.number == number)).mappings().first()
            return None if row is None else self._trial_dict(row)

    @staticmethod
    def _trial_dict(row: Any) -> dict[str, Any]:
        return {c.name: row.get(c.name) for c in TrialRow.__table__.c}

    def curve(self, trial_id: int) -> list[dict[str, Any]]:
        """The curve points of a trial ordered by step."""
        q = (select(CurvePointRow.step, CurvePointRow.name, CurvePointRow.value)
             .where(CurvePointRow.trial_id == trial_id)
             .order_by(CurvePointRow.step, CurvePointRow.name))
        with self._session() as s:
            return [{"step": a, "name": b, "value": c} for a, b, c in s.execute(q)]

    # ---- artifacts ---------------------------------------------------------------
    def save_artifact(self, trial_id: int, kind: str, payload: dict[str, Any]) -> None:
        """Stores a trial's ``input`` or ``output`` artifact, replacing one of that kind.

        Args:
          trial_id: the trial's id.
          kind: ``"input"`` (what the algorithm gave the evaluator) or ``"output"``
            (what the evaluator returned in ``Measurement.artifact``).
          payload: a mapping whose leaves are arrays (numpy or torch) or JSON-able values.

        Raises:
          ValueError: ``kind`` is not input/output.
          TypeError: the payload holds something that is neither an array nor JSON-able.
        """
        row = _artifact_row(kind, payload)
        with self.engine.begin() as conn:
            _put_artifact(conn, trial_id, row)

    def load_artifact(self, trial_id: int, kind: str = "output") -> dict[str, Any] | None:
        """A trial's artifact of ``kind`` as saved (arrays come back as numpy), or None."""
        if not self._has_artifacts:
            return None
        with self._session() as s:
            data = s.scalar(select(ArtifactRow.data).where(ArtifactRow.trial_id == trial_id,
                                                           ArtifactRow.kind == kind))
        return None if data is None else _artifacts.decode(data)

    def artifacts(self, trial_id: int) -> list[dict[str, Any]]:
        """What artifacts a trial has: kind, keys (name -> dtype[shape]), size, sha256."""
        if not self._has_artifacts:
            return []
        q = (select(ArtifactRow.kind, ArtifactRow.keys, ArtifactRow.size, ArtifactRow.sha256)
             .where(ArtifactRow.trial_id == trial_id).order_by(ArtifactRow.kind))
        with self._session() as s:
            return [{"kind": k, "keys": keys, "size": n, "sha256": h}
                    for k, keys, n, h in s.execute(q)]

    def close(self) -> None:
        """Releases the store's connections."""
        self.engine.dispose()


# Every call a driver makes waits out an outage of the store (memnas.store.patience).
make_patient(Store, (
    "create_experiment", "experiment", "require_experiment", "update_experiment",
    "experiments", "add_trial", "add_trials", "heartbeat", "update_trial", "update_trials",
    "clear_curve", "trials", "trial", "curve", "save_artifact", "load_artifact", "artifacts",
    "claim_experiment", "delete_experiment", "rename_experiment", "drop_failed_run",
    "evaluations", "evaluations_many", "cache_counters", "feedback_order"))


def normalize_url(url: str) -> str:
    """Turns a bare path into a SQLite URL; leaves URLs as they are."""
    if "://" not in url:
        return "sqlite:///" + url
    return url


def _one_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(getattr(e, 'orig', None) or e).__name__}: {text[0] if text else ''}"


def utcnow() -> _dt.datetime:
    """Naive UTC now, as stored in timestamps."""
    return _now()
