"""A running experiment whose driver died on this machine reads as interrupted, everywhere."""

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from memnas.cli import main
from memnas.dashboard import analysis
from memnas.result import Result
from memnas.store import Store
from memnas.store.liveness import driver_gone, shown_status


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process of this machine that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stored(url: str, driver: str, status: str = "running") -> Store:
    store = Store(url)
    exp_id = store.create_experiment("e", space={}, space_hash="s", algorithm={"name": "random"},
                                     evaluator={}, objectives={"accuracy": "max"}, config={})
    store.update_experiment(exp_id, status=status, driver=driver)
    store.close()
    return store


def test_driver_gone_only_for_a_dead_pid_of_this_host(dead_pid):
    host = socket.gethostname()
    assert driver_gone(f"{host}:{dead_pid}")
    assert not driver_gone(f"{host}:{os.getpid()}")
    assert not driver_gone(f"another-host:{dead_pid}")          # cannot tell: not gone
    assert not driver_gone(None) and not driver_gone("") and not driver_gone(f"{host}:x")


@pytest.mark.parametrize("status,driver,shown", [
    ("running", "dead", "interrupted"), ("running", "self", "running"),
    ("running", "other-host", "running"), ("completed", "dead", "completed"),
    ("interrupted", "dead", "interrupted")])
def test_ls_show_and_dashboard_show_a_dead_drivers_run_interrupted(
        tmp_path, dead_pid, status, driver, shown):
    host = socket.gethostname()
    pid = {"dead": f"{host}:{dead_pid}", "self": f"{host}:{os.getpid()}",
           "other-host": f"elsewhere:{dead_pid}"}[driver]
    url = f"sqlite:///{tmp_path}/m.db"
    _stored(url, pid, status)
    before = Store(url, read_only=True).experiment("e")
    assert before["status"] == status                   # the store keeps what was written

    ls = CliRunner().invoke(main, ["ls", "--store", url])
    assert ls.exit_code == 0, ls.output
    assert ls.output.splitlines()[1].split()[:2] == ["e", shown]
    show = CliRunner().invoke(main, ["show", "e", "--store", url])
    assert show.exit_code == 0, show.output
    assert f"experiment 'e': {shown}," in show.output
    assert Result("e", url).experiment["status"] == shown
    rows = Store(url, read_only=True).experiments()
    assert shown_status(rows[0]) == shown
    assert list(analysis.experiments_summary(rows, {}, {})["status"]) == [shown]
    after = Store(url, read_only=True).experiment("e")
    assert after["status"] == status and after["updated_at"] == before["updated_at"]
