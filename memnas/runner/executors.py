"""Executors run trial functions: in-process (tests, debugging) or as Ray tasks (default)."""

from __future__ import annotations

import abc
import os
import subprocess
import sys
from typing import Any, Callable, Sequence

from memnas.errors import ConfigError


class Executor(abc.ABC):
    """Narrow interface the driver loop uses: submit, wait, result, shutdown."""

    @abc.abstractmethod
    def submit(self, fn: Callable, *args: Any, num_cpus: float = 1,
               num_gpus: float = 0) -> Any:
        """Starts ``fn(*args)`` and returns a handle."""

    @abc.abstractmethod
    def wait(self, handles: Sequence[Any], n: int = 1,
             timeout: float | None = None) -> list[Any]:
        """Blocks until ``n`` of ``handles`` are done or ``timeout`` s pass; returns the done ones."""

    @abc.abstractmethod
    def result(self, handle: Any) -> Any:
        """The return value of a done handle (raises what the worker raised)."""

    def cancel(self, handle: Any) -> None:
        """Best-effort cancellation of a handle that is not done."""

    def shutdown(self) -> None:
        """Releases what the executor started."""


class LocalExecutor(Executor):
    """Runs each trial at submit time in this process: simple and deterministic."""

    def __init__(self) -> None:
        self._results: dict[int, tuple[bool, Any]] = {}
        self._next = 0

    def submit(self, fn, *args, num_cpus=1, num_gpus=0):
        handle = self._next
        self._next += 1
        try:
            self._results[handle] = (True, fn(*args))
        except BaseException as e:  # re-raised by result(), as Ray would
            if isinstance(e, KeyboardInterrupt):
                raise
            self._results[handle] = (False, e)
        return handle

    def wait(self, handles, n=1, timeout=None):
        return list(handles)

    def result(self, handle):
        ok, value = self._results.pop(handle)
        if not ok:
            raise value
        return value


class RayExecutor(Executor):
    """Runs each trial as a Ray task; Ray keeps worker processes warm between tasks.

    Args:
      address: a Ray cluster address (``"auto"``, ``"ray://..."``, ``"host:port"``);
        None starts a local Ray with ``num_cpus`` CPUs (or connects to ``RAY_ADDRESS``).
      num_cpus: CPUs of a local Ray instance (None: all of this machine's).
      modules: the user's modules (experiment file, evaluator, space classes) that
        workers must import: on a local Ray their folders go on the workers' path; on
        a cluster they are shipped, with memnas itself, in Ray's runtime environment.
    """

    def __init__(self, address: str | None = None, num_cpus: float | None = None,
                 modules: Sequence[Any] = ()) -> None:
        self._started = start_ray(address, num_cpus, modules)
        import ray

        self._ray = ray
        self._fns: dict[tuple[Callable, float, float], Any] = {}
        self._warm: list[Any] = []
        if self._started and not (address or os.environ.get("RAY_ADDRESS")):
            self._warm = warm_up(int(num_cpus or os.cpu_count() or 1))

    def submit(self, fn, *args, num_cpus=1, num_gpus=0):
        key = (fn, num_cpus, num_gpus)
        remote = self._fns.get(key)
        if remote is None:  # built once per function and resources, not per trial
            remote = self._fns[key] = _remote(fn).options(
                num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        return remote.remote(*args)

    def wait(self, handles, n=1, timeout=None):
        """Also returns the handles beyond ``n`` that are done already (no waiting for
        them), so the driver stores trials that ended together in one go."""
        handles = list(handles)
        done, rest = self._ray.wait(handles, num_returns=len(handles), timeout=0)
        if len(done) < n and rest:  # too few done already: block for the rest of n
            more, _ = self._ray.wait(rest, num_returns=min(n - len(done), len(rest)),
                                     timeout=timeout)
            done = done + more
        return done

    def result(self, handle):
        return self._ray.get(handle)

    def cancel(self, handle):
        try:
            self._ray.cancel(handle, force=True)
        except Exception:  # already finished or gone: nothing to cancel
            pass

    def shutdown(self):
        if self._started:
            stop_ray()
            self._started = False


def start_ray(address: str | None = None, num_cpus: float | None = None,
              modules: Sequence[Any] = ()) -> bool:
    """Starts a local Ray or connects to a cluster, unless Ray is initialized already.

    Args:
      address: a Ray cluster address; None starts a local Ray with ``num_cpus`` CPUs
        (or connects to ``RAY_ADDRESS``).
      num_cpus: CPUs of a local Ray instance (None: all of this machine's).
      modules: the user's modules workers must import (see `RayExecutor`).

    Returns:
      True when this call started (or connected) Ray: the caller shuts it down.

    Raises:
      ConfigError: the cluster at ``address`` cannot be reached, or refuses this
        process for its authentication token (or want of one): the message says what
        to set (`AUTH_HINT`).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    paths = []
    for m in modules:
        d = os.path.dirname(os.path.abspath(m.__file__))
        if d not in paths:
            paths.append(d)
    if address is None:
        # A local instance: workers share this file system, so put the experiment's
        # folders on their path. "local" ignores a stale /tmp/ray/ray_current_cluster
        # left by a killed run.
        pythonpath = os.pathsep.join(paths + [p for p in sys.path if p])
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=True,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        _watch_local_ray()
    else:
        # A cluster: ship memnas and the user's modules to the workers.
        import memnas
        from ray.exceptions import AuthenticationError

        refused = _refused_for_token(address)   # in milliseconds, where Ray takes 20 s
        if refused:
            raise ConfigError(f"cannot connect to Ray at {address!r}: {refused}")
        try:
            ray.init(address=address, logging_level="ERROR",
                     runtime_env={"py_modules": [memnas, *modules]})
        except (AuthenticationError, ConnectionError, RuntimeError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if isinstance(e, AuthenticationError) or "InvalidAuthToken" in str(e):
                msg = _token_hint()
            raise ConfigError(f"cannot connect to Ray at {address!r}: {msg}") from None
    return True


AUTH_HINT = ("the cluster requires token authentication; set RAY_AUTH_MODE=token (the "
             "token is read from ~/.ray/auth_token, or set RAY_AUTH_TOKEN to the output of "
             "`ray get-auth-token` on the head node)")
"""Why a driver without ``RAY_AUTH_MODE=token`` cannot join a cluster of ``ray start``
(Ray 2.60 turns token authentication on there whenever the head has ``~/.ray/auth_token``,
as it has once a local ``ray.init`` ran there)."""


def _token_hint() -> str:
    """What to set for a cluster that refused this process for its token (or want of one).

    memnas never turns token mode on by itself: like ``ray.init``, which does so only
    for a local cluster it finds (address None or "auto"), it sends the token of this
    machine (``~/.ray/auth_token``) only to a cluster the user said it is for.
    """
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        return AUTH_HINT
    fix = "set RAY_AUTH_TOKEN to the output of `ray get-auth-token` on the head node"
    if os.environ.get("RAY_AUTH_TOKEN"):
        return f"the cluster rejected the token in RAY_AUTH_TOKEN; {fix}"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join("~", ".ray", "auth_token")
    if not os.path.isfile(os.path.expanduser(path)):
        return f"RAY_AUTH_MODE=token is set but there is no token in {path}; {fix}"
    return f"the cluster rejected the token in {path}; {fix}"


def _refused_for_token(address: str) -> str | None:
    """`_token_hint` when the cluster at a ``host:port`` address refuses this process's
    token (or its want of one), else None.

    Asks the cluster's GCS for its id once: an answer or a refusal takes milliseconds,
    where ``ray.init`` retries a refusal for 20 s and then reports only that it could
    not connect. Anything else (nobody answers, another Ray, ``ray://`` and "auto"
    addresses) is left to ``ray.init`` and its own messages.
    """
    if "://" in address or address in ("auto", "local"):
        return None
    from ray.exceptions import AuthenticationError

    try:  # Ray's own client (no public API asks a cluster without joining it)
        from ray._raylet import (AuthenticationMode, AuthenticationTokenLoader,
                                 InnerGcsClient, get_authentication_mode)

        if get_authentication_mode() == AuthenticationMode.TOKEN and \
                not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
            return _token_hint()   # the client would abort this process (Ray 2.60)
        InnerGcsClient.standalone(address, None, 5000)
    except AuthenticationError:
        return _token_hint()
    except Exception:  # unreachable, or a Ray whose client differs: ray.init says
        return None
    return None


_WATCHDOGS: list[tuple[subprocess.Popen, int]] = []   # (watchdog, our end of its pipe)


def _watch_local_ray() -> None:
    """Starts a watchdog (`memnas.runner._raywatch`) for the local Ray just started.

    Ray ends its raylet and GCS with the process that started them, but its dashboard
    and runtime-env agents outlive a driver killed by SIGKILL. The watchdog, a small
    process of its own, holds the read end of a pipe whose write end only this process
    has: when it reads end-of-file (this process exited or was killed), or this process
    is no longer its parent, or the session's raylet is gone, it SIGKILLs every process
    of that session, then exits: Ray's servers of that session folder, and the renamed
    ``ray::`` workers and agents holding its log files open (never another session's,
    nor a process that merely names or reads the folder). Linux only; elsewhere, and when Ray's records of the session cannot be read,
    nothing is started.
    """
    for entry in [e for e in _WATCHDOGS if e[0].poll() is not None]:
        _WATCHDOGS.remove(entry)          # its Ray was shut down by someone else: done
        os.close(entry[1])
    if not sys.platform.startswith("linux"):
        return
    import ray

    try:  # Ray's record of the node it started (no public API names its raylet)
        node = ray._private.worker._global_node
        session_dir = node.get_session_dir_path()
        raylet = node.all_processes["raylet"][0].process.pid
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # a different Ray: no watchdog, Ray's own clean-up only
        return
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_raywatch.py")
    r, w = os.pipe()                      # not inherited by anything this process starts
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", script, str(os.getpid()), str(r), session_dir,
             node_id, str(raylet), os.path.dirname(os.path.abspath(ray.__file__))],
            pass_fds=(r,), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except OSError:
        os.close(w)
        return
    finally:
        os.close(r)
    _WATCHDOGS.append((proc, w))


def stop_ray() -> None:
    """Shuts down Ray and lets the watchdogs of the local Ray it started sweep what is
    left of it and exit."""
    import ray

    ray.shutdown()
    while _WATCHDOGS:
        proc, w = _WATCHDOGS.pop()
        os.close(w)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still sweeping: it ends on its own
            pass


_REMOTES: dict[Callable, Any] = {}


def _remote(fn: Callable) -> Any:
    """One Ray remote function per Python function, so Ray ships each to the workers once."""
    remote = _REMOTES.get(fn)
    if remote is None:
        import ray

        remote = _REMOTES[fn] = ray.remote(fn)
    return remote


def _warm_evaluator(candidate: Any, ctx: Any) -> dict[str, float]:
    return {"warm": 0.0}


def warm_up(n: int) -> list[Any]:
    """Starts ``n`` no-op trials as Ray tasks, and does not wait for them.

    A fresh worker process spends about a second importing memnas, PyGlove and numpy
    and fetching the trial function on its first trial; doing it while the driver sets
    up keeps that second out of the first trials (and out of the speed-up of several
    workers on short trials).

    Returns:
      The tasks' handles (nothing needs them).
    """
    from memnas.measurement import Context
    from memnas.runner._trial import run_trials

    task = _remote(run_trials).options(num_cpus=1, max_retries=0)
    return [task.remote(_warm_evaluator, [(None, Context())]) for _ in range(max(1, n))]


def make_executor(kind: str, *, address: str | None = None, num_cpus: float | None = None,
                  modules: Sequence[Any] = ()) -> Executor:
    """Returns the executor named ``kind`` ("ray" or "local").

    Raises:
      ConfigError: an unknown kind.
    """
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, modules=modules)
    raise ConfigError(f"unknown executor {kind!r}; expected 'ray' or 'local'")
