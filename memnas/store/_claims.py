"""The Store's writes that decide who holds an experiment: claim, delete, rename, each atomic."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import select

from memnas.errors import StoreError
from memnas.records import ExperimentStatus
from memnas.store._models import (ArtifactRow, CurvePointRow, ExperimentRow, FeedbackRow,
                                  TrialRow, _now)

_RUNNING = ExperimentStatus.RUNNING.value


class ExperimentClaims:
    """Mixed into `memnas.store.Store`: one driver per experiment, without races.

    An experiment is *free* for a driver ``me`` when it is not running, or is run by
    ``me``, by no one, by a driver silent for ``stale_after_s`` seconds (or that never
    sent a heartbeat), or by the driver that ``is_dead`` says has died (asked of the
    holder read just before; the condition names that driver, so one that took the
    experiment since is never taken over). Each write below is a conditional statement
    on that condition, checked by its row count: of drivers that try at once, exactly
    one succeeds (SQLite runs writes one at a time; PostgreSQL re-checks the condition
    on the row a concurrent update left).
    """

    engine: sa.Engine        # set by Store
    shown_url: str

    def claim_experiment(self, exp_id: int, driver: str, stale_after_s: float,
                         is_dead: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
        """Makes ``driver`` the one driver of an experiment: one conditional update sets it
        running by ``driver`` with a fresh heartbeat where it is free (see the class).

        Returns:
          None when claimed; else the experiment's row, which names who holds it.

        Raises:
          StoreError: there is no experiment with that id.
        """
        free = self._free(exp_id, driver, stale_after_s, is_dead)
        now = _now()
        with self.engine.begin() as conn:
            done = conn.execute(sa.update(ExperimentRow.__table__).where(free).values(
                status=_RUNNING, driver=driver, heartbeat_at=now, updated_at=now)).rowcount
        return None if done else self._holder(exp_id)

    def delete_experiment(self, exp_id: int, driver: str, stale_after_s: float,
                          is_dead: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
        """Deletes an experiment with its trials, curves, artifacts and feedback rows, in
        one transaction, unless a live driver holds it (see the class; ``driver`` is the
        deleting process).

        Returns:
          None when deleted; else the experiment's row, which names who holds it.

        Raises:
          StoreError: there is no experiment with that id.
        """
        free = self._free(exp_id, driver, stale_after_s, is_dead)
        with self.engine.begin() as conn:  # the update first: it takes the write lock
            done = conn.execute(sa.update(ExperimentRow.__table__).where(free)
                                .values(updated_at=_now())).rowcount
            if done:
                _delete_rows(conn, exp_id)
        return None if done else self._holder(exp_id)

    def rename_experiment(self, exp_id: int, new_name: str, driver: str, stale_after_s: float,
                          is_dead: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
        """Renames an experiment (its trials, curves, artifacts and feedback rows follow
        its id) in one conditional update, unless a live driver holds it (see the class).

        Returns:
          None when renamed; else the experiment's row, which names who holds it.

        Raises:
          StoreError: there is no experiment with that id, or one named ``new_name``.
        """
        e = ExperimentRow.__table__.c
        taken = StoreError(f"experiment {new_name!r} already exists in {self.shown_url!r}; "
                           "choose another name")
        with self.engine.connect() as conn:
            if conn.execute(select(e.id).where(e.name == new_name)).first() is not None:
                raise taken
        free = self._free(exp_id, driver, stale_after_s, is_dead)
        try:
            with self.engine.begin() as conn:
                done = conn.execute(sa.update(ExperimentRow.__table__).where(free)
                                    .values(name=new_name, updated_at=_now())).rowcount
        except sa.exc.IntegrityError:  # named so by another process at this moment
            raise taken from None
        return None if done else self._holder(exp_id)

    def drop_failed_run(self, exp_id: int, driver: str, keep: Iterable[str]) -> bool:
        """Ends a run by ``driver`` that failed, in one transaction: deletes the experiment
        (as `delete_experiment` does) when none of its trials has a status in ``keep``;
        else marks it interrupted if it still says running. Does nothing when another
        driver holds it by now.

        Returns:
          Whether the experiment was deleted.
        """
        e, t = ExperimentRow.__table__.c, TrialRow.__table__.c
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(ExperimentRow.__table__)
                                .where(e.id == exp_id, e.driver == driver)
                                .values(updated_at=_now())).rowcount:
                return False
            kept = conn.execute(select(t.id).where(t.experiment_id == exp_id,
                                                   t.status.in_([str(s) for s in keep]))
                                .limit(1)).first()
            if kept is None:
                _delete_rows(conn, exp_id)
                return True
            conn.execute(sa.update(ExperimentRow.__table__)
                         .where(e.id == exp_id, e.status == _RUNNING)
                         .values(status=ExperimentStatus.INTERRUPTED.value, heartbeat_at=None))
        return False

    def _holder(self, exp_id: int) -> dict[str, Any]:
        """The experiment's row as it is now (who holds it)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ExperimentRow.__table__)
                               .where(ExperimentRow.id == exp_id)).mappings().first()
        if row is None:
            raise StoreError(f"no experiment with id {exp_id} in {self.shown_url!r}")
        return dict(row)

    def _free(self, exp_id: int, me: str, stale_after_s: float,
              is_dead: Callable[[str], bool] | None) -> sa.ColumnElement[bool]:
        """The experiment, where ``me`` may take it (see the class).

        Raises:
          StoreError: there is no experiment with that id.
        """
        e = ExperimentRow.__table__.c
        holder = self._holder(exp_id)["driver"]
        stale = _now() - _dt.timedelta(seconds=stale_after_s)
        free = [e.status != _RUNNING, e.driver.is_(None), e.driver == me,
                e.heartbeat_at.is_(None), e.heartbeat_at < stale]
        if is_dead is not None and holder and holder != me and is_dead(holder):
            free.append(e.driver == holder)
        return sa.and_(e.id == exp_id, sa.or_(*free))


def _delete_rows(conn: sa.Connection, exp_id: int) -> None:
    """Deletes an experiment's rows, children first, inside the caller's transaction."""
    trials = select(TrialRow.id).where(TrialRow.experiment_id == exp_id).scalar_subquery()
    for table, column in ((FeedbackRow, FeedbackRow.experiment_id == exp_id),
                          (CurvePointRow, CurvePointRow.trial_id.in_(trials)),
                          (ArtifactRow, ArtifactRow.trial_id.in_(trials)),
                          (TrialRow, TrialRow.experiment_id == exp_id),
                          (ExperimentRow, ExperimentRow.id == exp_id)):
        conn.execute(sa.delete(table).where(column))
