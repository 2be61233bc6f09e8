"""A driver killed by SIGKILL: readers show its run interrupted at once, and its local Ray ends."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import memnas
from memnas.cli import main
from memnas.dashboard import analysis
from memnas.store import Store

pytestmark = pytest.mark.slow
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HERE)     # this checkout's memnas, whatever is installed


def _stat(pid: int) -> tuple[int, str, int] | None:
    """``(parent pid, state, start time)`` of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()
    return int(fields[1]), fields[0].decode(), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every live process under ``root``."""
    children: dict[int, list[int]] = {}
    started = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[0], []).append(int(name))
            started[int(name)] = st[2]
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = started[pid]
        todo.extend(children.get(pid, []))
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ")[:80].decode(errors="replace")
    except OSError:
        return ""


def _alive(procs: dict[int, int]) -> list[int]:
    """Those of ``procs`` still running (a zombie has ended: only its parent's wait is due)."""
    return [pid for pid, start in procs.items()
            if (st := _stat(pid)) is not None and st[2] == start and st[1] not in "ZX"]


@pytest.fixture(scope="module")
def own_ray():
    """A local Ray of this process, running while the other driver is killed: its
    processes (under this process) must outlive the other's sweep."""
    import ray

    from memnas.runner.executors import start_ray, stop_ray

    assert start_ray(None, 1)
    mine = _descendants(os.getpid())
    yield ray, mine
    stop_ray()


@pytest.fixture(scope="module")
def killed(tmp_path_factory, own_ray):
    """A `memnas run` on local Ray with 2 workers, SIGKILLed after 2 finished trials: the
    store's URL, the processes under the driver just before (Ray's included) and their
    command lines, and when it was killed."""
    test_dir = tmp_path_factory.mktemp("killed")
    url = f"sqlite:///{test_dir}/slow.db"
    env = {**os.environ, "SLOW_STORE": url, "PYTHONPATH": os.pathsep.join([HERE, ROOT]), "MEMNAS_TEST_DIR": str(test_dir),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    file = os.path.join(HERE, "cli_files", "slow_experiment.py")
    driver = subprocess.Popen([sys.executable, "-m", "memnas.cli", "run", file, "--max-trials",
                               "40", "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=str(test_dir), start_new_session=True)
    done, deadline = 0, time.monotonic() + 120
    while done < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.3)
        try:
            s = Store(url, read_only=True)
            exp = s.experiment("slow")
            done = len(s.trials(exp["id"], ["completed"])) if exp else 0
            s.close()
        except memnas.StoreError:   # not created yet
            continue
    assert done >= 2, driver.stderr.read().decode()[-2000:]
    procs = _descendants(driver.pid)
    names = {pid: _cmdline(pid) for pid in procs}
    raylet = next(pid for pid, n in names.items() if "raylet" in n)
    with open(f"/proc/{raylet}/cmdline", "rb") as f:
        session = next(a.split(b"=", 1)[1].decode() for a in f.read().split(b"\0")
                       if a.startswith(b"--session_dir="))
    log = os.path.join(session, "logs", sorted(os.listdir(os.path.join(session, "logs")))[0])
    bystander = subprocess.Popen(   # names the session's folder and reads one of its logs
        [sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); time.sleep(120)", log])
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    killed_at = time.monotonic()
    yield url, procs, names, killed_at, bystander
    bystander.kill()
    bystander.wait()
    for pid in _alive(procs):      # what the old code left behind: ours to end
        os.kill(pid, signal.SIGKILL)


def test_ls_show_and_dashboard_say_interrupted_right_after_the_kill(killed):
    url, _, _, killed_at, _ = killed
    assert Store(url, read_only=True).experiment("slow")["status"] == "running"  # as stored
    ls = CliRunner().invoke(main, ["ls", "--store", url])
    assert ls.output.splitlines()[1].split()[:2] == ["slow", "interrupted"], ls.output
    show = CliRunner().invoke(main, ["show", "slow", "--store", url])
    assert "experiment 'slow': interrupted," in show.output, show.output
    rows = Store(url, read_only=True).experiments()
    assert list(analysis.experiments_summary(rows, {}, {})["status"]) == ["interrupted"]
    assert time.monotonic() - killed_at < 10


def test_every_process_of_its_local_ray_ends_within_seconds(killed):
    _, procs, names, killed_at, _ = killed
    assert any("raylet" in n for n in names.values()), names    # Ray ran under the driver
    while _alive(procs) and time.monotonic() - killed_at < 5:
        time.sleep(0.1)
    left = _alive(procs)
    assert not left, [names.get(pid, pid) for pid in left]


def test_another_ray_session_and_a_reader_of_its_logs_live_on(killed, own_ray):
    ray, mine = own_ray
    time.sleep(max(0.0, killed[3] + 2 - time.monotonic()))   # after the sweep
    assert killed[4].poll() is None, "a process reading the session's log was killed"
    assert any("raylet" in _cmdline(pid) for pid in mine)
    assert sorted(_alive(mine)) == sorted(mine)
    assert ray.get(ray.remote(lambda: 42).remote(), timeout=60) == 42
