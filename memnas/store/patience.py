"""Riding out store outages: which database errors are transient, and retrying the Store's calls through them."""

from __future__ import annotations

import functools
import random
import sys
import threading
import time
from typing import Any, Callable, TypeVar

import sqlalchemy as sa

from memnas.errors import StoreFull, StoreUnavailable

__all__ = ["DEFAULT_PATIENCE_S", "outage_kind", "make_patient"]

DEFAULT_PATIENCE_S = 300.0
"""How long a driver waits for its store to come back before it stops (`run`'s
``store_patience_s``): long enough for a PostgreSQL restart or failover, short enough
that a run whose database is gone does not hang for hours."""

_MAX_DELAY_S = 5.0
_local = threading.local()   # calls of this thread inside a patient call: only the outer one waits
F = TypeVar("F", bound=Callable[..., Any])


def outage_kind(error: BaseException) -> str | None:
    """What a database error says about the store: ``"down"``, ``"full"`` or None.

    ``"down"``: the server cannot be reached or is restarting, a connection was dropped
    (PostgreSQL), or the database stays locked past SQLite's busy timeout; worth waiting
    for. ``"full"``: the disk under the store is full (or failing); waiting will not
    help. None: any other error (a bug, a constraint), raised as it is.
    """
    if isinstance(error, (StoreUnavailable, StoreFull)):
        return None
    if not isinstance(error, sa.exc.DBAPIError):
        return "down" if isinstance(error, sa.exc.TimeoutError) else None  # pool timeout
    orig = getattr(error, "orig", None)
    text = str(orig or error).lower()
    module = type(orig).__module__ if orig is not None else ""
    if module.startswith("sqlite3"):
        if "locked" in text or "busy" in text:
            return "down"
        if "full" in text or "disk i/o error" in text:
            return "full"
        return None
    state = str(getattr(orig, "sqlstate", "") or "")
    if state == "53100" or "no space left on device" in text:
        return "full"
    if error.connection_invalidated or isinstance(error, (sa.exc.OperationalError,
                                                           sa.exc.InterfaceError)):
        return "down"
    return None


def _one_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".strip()


def _patient(method: F) -> F:
    """Wraps a Store method so it is retried, with back-off, while the store is down.

    A call that fails with a "down" error is run again (each Store call is one
    transaction, so running it again is safe) until it succeeds or the store's
    ``patience_s`` has passed since the outage began; then `StoreUnavailable`. One line
    goes to stderr when the waiting starts and one when the store is back. A "full"
    error raises `StoreFull` at once. With ``patience_s == 0`` (readers: the dashboard,
    ``memnas show``) an outage is raised at once, as one line. After a store gave up,
    later calls try once each (a stopping run must not wait again for every write).
    """
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "depth", 0):
            return method(self, *args, **kwargs)
        _local.depth = 1
        try:
            return _retrying(self, method, args, kwargs)
        finally:
            _local.depth = 0
    return call  # type: ignore[return-value]


def _retrying(store: Any, method: Callable, args: tuple, kwargs: dict) -> Any:
    since: float | None = None
    delay = 0.25
    while True:
        try:
            out = method(store, *args, **kwargs)
        except Exception as e:
            kind = outage_kind(e)
            if kind is None:
                raise
            if kind == "full":
                raise StoreFull(f"store {store.shown_url!r} is out of disk space "
                                f"({_one_line(e)})") from None
            now = time.monotonic()
            patience = float(getattr(store, "patience_s", 0.0) or 0.0)
            if since is None:
                since = now
                if patience > 0 and not store.gave_up:
                    store.outages += 1
                    print(f"memnas: store {store.shown_url!r} is unreachable ({_one_line(e)}); "
                          f"running trials go on, results are held, retrying for up to "
                          f"{patience:.0f} s", file=sys.stderr, flush=True)
            if patience <= 0 or store.gave_up or now - since >= patience:
                if patience > 0:
                    store.gave_up = True
                waited = f" for {now - since:.0f} s" if now - since >= 1 else ""
                raise StoreUnavailable(f"store {store.shown_url!r} is unreachable{waited} "
                                       f"({_one_line(e)})") from None
            store.retries += 1
            time.sleep(min(delay, max(0.0, since + patience - now)) * random.uniform(0.8, 1.2))
            delay = min(_MAX_DELAY_S, delay * 2)
            continue
        if since is not None and not store.gave_up:
            print(f"memnas: store {store.shown_url!r} is back after "
                  f"{time.monotonic() - since:.0f} s", file=sys.stderr, flush=True)
        store.gave_up = False
        return out


def make_patient(cls: type, names: tuple[str, ...]) -> None:
    """Wraps each of ``cls``'s methods ``names`` with the outage handling of `_patient`.

    Written here rather than taken from a library: SQLAlchemy's ``pool_pre_ping``
    replaces dead pooled connections but fails a call made while the server is down,
    and retry libraries (tenacity) do not know which database errors are transient
    nor that a stopping run must not wait twice.
    """
    for name in names:
        setattr(cls, name, _patient(getattr(cls, name)))
