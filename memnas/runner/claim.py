"""One driver per experiment: claim it race-free, end a failed run, remove or rename it."""

from __future__ import annotations

import datetime as _dt
import os
import socket
from typing import Any, Mapping

from memnas.errors import ConfigError, StoreError
from memnas.records import FINISHED, WITH_RESULT
from memnas.runner.contract import STALE_AFTER_S, RunnableExperiment, check_against_store
from memnas.store import Store, utcnow
from memnas.store.liveness import driver_gone

__all__ = ["claim", "driver_id", "end_failed_run", "hold", "remove", "rename"]


def driver_id() -> str:
    """This process as the driver of an experiment: ``"host:pid"``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(store: Store, experiment: RunnableExperiment, driver: str) -> int:
    """Makes ``driver`` the one driver of ``experiment``; returns the experiment's id.

    A new experiment's row is inserted already held by ``driver``. When another driver
    inserted it at the same moment (names are unique), it is read back and claimed as an
    existing one is: by `Store.claim_experiment`, one conditional update, so of drivers
    starting at once exactly one gets it. A driver gone from this host (its pid is not
    alive) is taken over at once, one silent for `STALE_AFTER_S` from any host.

    Raises:
      ConfigError: another driver runs the experiment (the message names it), or the
        stored experiment has another space or objectives (`check_against_store`).
    """
    check_against_store(experiment, store)
    row = store.experiment(experiment.name)
    if row is None:
        try:
            return store.create_experiment(experiment.name, driver=driver,
                                           **experiment.describe())
        except StoreError:  # created by another driver just now: the claim decides
            row = store.experiment(experiment.name)
            if row is None:
                raise
            check_against_store(experiment, store)
    hold(store, experiment.name, row["id"], driver)
    return row["id"]


def hold(store: Store, name: str, exp_id: int, driver: str) -> None:
    """Claims experiment ``name`` (id ``exp_id``) for ``driver`` again, or for the first
    time (see `claim`); a heartbeat for a driver that holds it already.

    Raises:
      ConfigError: another driver runs it.
    """
    held = store.claim_experiment(exp_id, driver, STALE_AFTER_S, is_dead=driver_gone)
    if held is not None:
        raise _refusal(name, held)


def end_failed_run(store: Store, exp_id: int, driver: str, error: BaseException) -> bool:
    """Ends a run that ``error`` stopped; deletes the experiment if it is left unusable.

    Deleted (with its trials, curves, artifacts and feedback, in one transaction) when
    no trial of any run has finished, or, when the run was refused for its
    configuration (a `ConfigError`, e.g. an objective the evaluator does not return),
    none has a result: what is stored then says nothing of the search, and keeping it
    would fix the space and objectives of that name. Failed trials are kept when the
    run stopped otherwise (Ctrl-C, a crash): their errors tell what went wrong. Kept
    experiments are marked interrupted; nothing is done when another driver holds the
    experiment by now.

    Returns:
      Whether the experiment was deleted.
    """
    keep = WITH_RESULT if isinstance(error, ConfigError) else FINISHED
    return store.drop_failed_run(exp_id, driver, keep)


def remove(store: Store, name: str) -> None:
    """Deletes experiment ``name`` with its trials, curves, artifacts and feedback rows,
    in one transaction, unless a live driver runs it.

    Raises:
      StoreError: there is no experiment of that name.
      ConfigError: a driver runs it.
    """
    row = store.require_experiment(name)
    held = store.delete_experiment(row["id"], driver_id(), STALE_AFTER_S, is_dead=driver_gone)
    if held is not None:
        raise _refusal(name, held)


def rename(store: Store, name: str, new_name: str) -> None:
    """Renames experiment ``name`` to ``new_name`` (its trials, curves, artifacts and
    feedback follow), in one statement, unless a live driver runs it.

    Raises:
      ConfigError: ``new_name`` is not a valid name, or a driver runs the experiment.
      StoreError: there is no experiment ``name``, or there is one ``new_name``.
    """
    if not isinstance(new_name, str) or not new_name.strip() or len(new_name) > 200:
        raise ConfigError(f"new experiment name must be a non-empty string of at most 200 "
                          f"characters, got {new_name!r}")
    row = store.require_experiment(name)
    held = store.rename_experiment(row["id"], new_name, driver_id(), STALE_AFTER_S,
                                   is_dead=driver_gone)
    if held is not None:
        raise _refusal(name, held)


def _refusal(name: str, row: Mapping[str, Any]) -> ConfigError:
    """The one line a driver (or `memnas rm` / `mv`) gets while another driver runs ``name``."""
    age = (utcnow() - (row["heartbeat_at"] or _dt.datetime.min)).total_seconds()
    return ConfigError(f"experiment {name!r} is being run by driver {row['driver']} "
                       f"(heartbeat {max(age, 0):.0f} s ago); stop it first")
