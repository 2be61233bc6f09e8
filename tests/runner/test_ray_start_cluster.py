"""`memnas run` on a cluster started as users start one: `ray start`, with Ray's token authentication."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from memnas.store import Store

pytestmark = pytest.mark.slow
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)     # this checkout's memnas, whatever is installed
FILE = os.path.join(HERE, "cli_files", "toy_experiment.py")
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
FIX = ("set RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token, or set "
       "RAY_AUTH_TOKEN to the output of `ray get-auth-token` on the head node)")


def _free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _env(home: str, **extra: str) -> dict[str, str]:
    """This process's environment without Ray's settings (``RAY_AUTH_MODE`` may be set
    here by an earlier test's local Ray), with its own home (``~/.ray/auth_token``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": home, **extra}


def _session(sid: int) -> list[int]:
    """The live processes of a session: a `ray start`'s servers, agents and workers
    (Ray's workers are in their own process groups, not their own sessions)."""
    out = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                text = f.read()
        except OSError:  # not a process, or gone
            continue
        fields = text[text.rfind(b")") + 2:].split()   # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            out.append(int(name))
    return out


def _kill_sessions(sids: list[int]) -> None:
    """SIGKILLs the processes of the given sessions until none is left (never `ray
    stop`, which would end every Ray on this machine, other tests' too)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = [p for sid in sids for p in _session(sid)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # ended meanwhile
                pass
        time.sleep(0.1)


def _ray_start(args: list[str], env: dict[str, str], sids: list[int]) -> str:
    """Runs ``ray start ARGS`` in a session of its own (recorded in ``sids`` at once, for
    the clean-up); returns its output."""
    proc = subprocess.Popen([RAY, "start", *args, "--disable-usage-stats"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    sids.append(proc.pid)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node, each started by `ray start` in a session of its own,
    with 1 CPU each: ``(address, head's home folder)``.

    The head's home holds the cluster's token (``~/.ray/auth_token``), so `ray start
    --head` turns token authentication on, as it does whenever a token exists (one local
    ``ray.init`` writes it); the worker node, as on a machine that does not share that
    home, gets it in ``RAY_AUTH_TOKEN``. One CPU a node: two trials at once use both.
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` (Linux's default, unlike the tests' 0): with
    0 a second `ray start --address` is refused; with 1 Ray binds the machine's address
    (printed as "Local node IP"), which the driver then connects to.
    """
    base = tmp_path_factory.mktemp("raystart")
    home, worker_home = base / "home", base / "worker-home"
    (home / ".ray").mkdir(parents=True)
    worker_home.mkdir()
    token = secrets.token_hex(16)
    (home / ".ray" / "auth_token").write_text(token)
    short = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # Ray's socket paths: < 108 bytes
    port, sids = _free_port(), []
    try:
        out = _ray_start(["--head", "--port", str(port), "--temp-dir", f"{short}/h",
                          "--num-cpus", "1", "--include-dashboard=false"],
                         _env(str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1"), sids)
        ip = re.search(r"Local node IP: (\S+)", out)
        assert ip, out[-3000:]
        address = f"{ip.group(1)}:{port}"
        _ray_start(["--address", address, "--temp-dir", f"{short}/w", "--num-cpus", "1"],
                   _env(str(worker_home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
                        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token), sids)
        yield address, str(home)
    finally:
        _kill_sessions(sids)
        shutil.rmtree(short, ignore_errors=True)
        assert not [p for sid in sids for p in _session(sid)]


def _memnas_run(address: str, url: str, name: str, env: dict[str, str],
                cwd: str) -> subprocess.CompletedProcess:
    """`memnas run` of the toy experiment file (4 trials, 2 workers) on the cluster."""
    return subprocess.run(
        [sys.executable, "-m", "memnas.cli", "run", FILE, "--max-trials", "4", "--workers", "2",
         "--ray-address", address, "--store", url, "--name", name],
        env={**env, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_without_token_mode_the_run_stops_at_once_saying_what_to_set(cluster, tmp_path):
    address, home = cluster
    url = f"sqlite:///{tmp_path}/m.db"
    started = time.monotonic()
    proc = _memnas_run(address, url, "no-token", _env(home), str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = (f"error: cannot connect to Ray at {address!r}: the cluster requires token "
            f"authentication; {FIX}")
    assert proc.stderr.strip().splitlines()[-1] == line, proc.stderr[-3000:]
    assert sum(x.startswith("error:") for x in proc.stderr.splitlines()) == 1
    assert time.monotonic() - started < 20   # not Ray's 20 s of retries first
    assert Store(url, read_only=True).experiment("no-token") is None


def test_a_rejected_token_is_named(cluster, tmp_path):
    address, home = cluster
    url = f"sqlite:///{tmp_path}/m.db"
    proc = _memnas_run(address, url, "bad-token",
                       _env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32), str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot connect to Ray at {address!r}: the cluster rejected the token in "
        f"RAY_AUTH_TOKEN; set RAY_AUTH_TOKEN to the output of `ray get-auth-token` on the "
        f"head node"), proc.stderr[-3000:]
    assert Store(url, read_only=True).experiment("bad-token") is None


def test_token_mode_without_a_token_is_named(cluster, tmp_path):
    address, _ = cluster
    url = f"sqlite:///{tmp_path}/m.db"
    proc = _memnas_run(address, url, "no-file", _env(str(tmp_path), RAY_AUTH_MODE="token"),
                       str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot connect to Ray at {address!r}: RAY_AUTH_MODE=token is set but there "
        f"is no token in ~/.ray/auth_token; set RAY_AUTH_TOKEN to the output of `ray "
        f"get-auth-token` on the head node"), proc.stderr[-3000:]


def test_with_token_mode_the_run_completes_on_the_cluster(cluster, tmp_path):
    address, home = cluster
    url = f"sqlite:///{tmp_path}/m.db"
    proc = _memnas_run(address, url, "token", _env(home, RAY_AUTH_MODE="token"), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = Store(url, read_only=True)
    exp = store.experiment("token")
    trials = store.trials(exp["id"])
    assert exp["status"] == "completed"
    assert sorted(t["number"] for t in trials) == [0, 1, 2, 3]
    assert {t["status"] for t in trials} == {"completed"}
    nodes = {t["node"] for t in trials}
    # Ray nodes of the cluster ("host:node-id"). Short trials may all land on one node
    # (seen once on a loaded machine); placement on several nodes is
    # test_ray_executor.py's two-node test.
    assert 1 <= len(nodes) <= 2 and all(":" in n for n in nodes), nodes
