"""Whether the driver stored for an experiment still lives: readers show a dead one's run as interrupted."""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

from memnas.records import ExperimentStatus

__all__ = ["alive", "driver_gone", "shown_status"]


def alive(pid: int) -> bool:
    """Whether a process of this machine with that pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def driver_gone(driver: str | None) -> bool:
    """True when ``driver`` (stored as ``"host:pid"``) ran on this machine and no
    process of that pid is left; False when it lives or runs elsewhere (unknown)."""
    host, _, pid = (driver or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def shown_status(experiment: Mapping[str, Any]) -> str:
    """An experiment's status as readers show it (``memnas ls`` / ``show``, the dashboard).

    A stored ``running`` whose driver is gone from this machine (killed, so it could not
    say so) is shown ``interrupted``, as the next run would find it. Computed on every
    read, never written: readers leave the store as it is.

    Args:
      experiment: a row of ``Store.experiment`` / ``Store.experiments``.
    """
    status = str(experiment.get("status") or "")
    if status == ExperimentStatus.RUNNING and driver_gone(experiment.get("driver")):
        return ExperimentStatus.INTERRUPTED.value
    return status
