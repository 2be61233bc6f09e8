"""The `memnas` command: run a file through Ray, then ls, show, export and bad input."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from memnas.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
FILE = os.path.join(HERE, "cli_files", "toy_experiment.py")


@pytest.fixture(scope="module")
def ran_store(tmp_path_factory):
    """A store filled by a real `memnas run` on local Ray, in a separate process."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/cli.db"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "memnas.cli", "run", FILE, "--max-trials", "6", "--workers", "2",
         "--store", url, "--name", "cli-recipes"],
        capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path_factory.getbasetemp()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return url, proc


@pytest.mark.slow
def test_run_shows_progress_summary_and_next_steps(ran_store):
    _, proc = ran_store
    assert "6/6 done | 0 failed | best accuracy=" in proc.stderr
    assert "experiment 'cli-recipes': completed, 6 completed" in proc.stdout
    assert "memnas dashboard --store sqlite:///" in proc.stdout


@pytest.mark.slow
def test_ls_show_export(ran_store, tmp_path):
    url, _ = ran_store
    r = CliRunner().invoke(main, ["ls", "--store", url])
    assert r.exit_code == 0 and "cli-recipes" in r.output and "random" in r.output
    r = CliRunner().invoke(main, ["show", "cli-recipes", "--store", url])
    assert r.exit_code == 0 and "Pareto front (accuracy vs params)" in r.output
    out = tmp_path / "t.json"
    r = CliRunner().invoke(main, ["export", "cli-recipes", "--store", url, "--format", "json",
                                  "-o", str(out)])
    assert r.exit_code == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 6 and all(row["status"] == "completed" for row in rows)
    assert len({row["pid"] for row in rows}) >= 1 and all(row["node"] for row in rows)
    r = CliRunner().invoke(main, ["export", "cli-recipes", "--store", url, "--format", "csv"])
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("number,status,summary,decisions")
    assert len(r.output.strip().splitlines()) == 7


@pytest.mark.parametrize("args,msg", [
    (["show", "nope", "--store", "sqlite:///{tmp}/e.db"], "error: cannot open store"),
    (["ls", "--store", "sqlite:////no/such/dir/x.db"], "error: cannot open store 'sqlite:////no/such/dir/x.db'"),
    (["run", "missing.py"], "error: experiment file"),
    (["dashboard", "--store", "mysqlx://nowhere/x"], "error: cannot open store 'mysqlx://nowhere/x'"),
])
def test_bad_input_is_one_line(args, msg, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert r.output.startswith(msg) and r.output.count("\n") == 1, r.output


def test_run_refuses_a_file_without_experiment(tmp_path):
    f = tmp_path / "noexp.py"
    f.write_text("x = 1\n")
    r = CliRunner().invoke(main, ["run", str(f)])
    assert r.exit_code == 2 and "must define `experiment = memnas.Experiment(...)`" in r.output
