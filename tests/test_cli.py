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


def _write_exp(path, store, space="Point(x=pg.floatv(0.0, 1.0), y=pg.oneof([1, 2]), kind='a')",
               algorithm="random", objectives="{'accuracy': 'max'}"):
    path.write_text(
        "import pyglove as pg\nimport memnas\nfrom toyspace import Point, evaluate\n"
        f"experiment = memnas.Experiment(name='e', space={space}, evaluator=evaluate, "
        f"algorithm={algorithm!r}, objectives={objectives}, store={store!r})\n")
    return str(path)


def _lines_in_store(url):
    from memnas.store import Store

    s = Store(url, read_only=True)
    return [(e["name"], e["num_trials"]) for e in s.experiments()]


def test_bad_input_through_the_cli_writes_nothing_and_loses_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    ok = _write_exp(tmp_path / "ok_exp.py", url)
    r = CliRunner().invoke(main, ["run", ok, "--max-trials", "3", "--executor", "local"])
    assert r.exit_code == 0, r.output
    before = _lines_in_store(url)
    cases = {
        "changed_space": (dict(space="Point(x=pg.floatv(0.0, 2.0), y=1, kind='a')"),
                          "error: experiment 'e' in 'sqlite:///" ),
        "unknown_algo": (dict(algorithm="anneal"), "error: unknown algorithm 'anneal'"),
        "never_reported": (dict(objectives="{'perplexity': 'min'}"),
                           "error: experiment 'e' in"),
        "bad_space": (dict(space="Point(x=0.5, y=1, kind='a')"), "error: space has no decisions"),
    }
    for stem, (kw, msg) in cases.items():
        f = _write_exp(tmp_path / f"{stem}.py", url, **kw)
        r = CliRunner().invoke(main, ["run", f, "--max-trials", "5", "--executor", "local"])
        errors = [line for line in r.output.splitlines() if line.startswith("error")]
        assert r.exit_code == 2 and len(errors) == 1 and errors[0].startswith(msg), (stem, r.output)
    assert _lines_in_store(url) == before
    f = _write_exp(tmp_path / "new_objective.py", url, objectives="{'perplexity': 'min'}")
    r = CliRunner().invoke(main, ["run", f, "--name", "e2", "--max-trials", "5",
                                  "--executor", "local"])
    assert r.exit_code == 2 and r.output.splitlines()[-1] == (
        "error: objective 'perplexity' is not among the metrics the evaluator returned: "
        "accuracy, params"), r.output
    r = CliRunner().invoke(main, ["run", ok, "--store", "sqlite:////nope/x.db", "--executor", "local"])
    assert r.exit_code == 2 and "folder '/nope' does not exist" in r.output


def test_old_schema_version_is_named(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/old.db"
    from memnas.store import Store

    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE memnas_version SET schema_version = 0"))
    engine.dispose()
    r = CliRunner().invoke(main, ["ls", "--store", url])
    assert r.exit_code == 2 and "has schema version 0, this memnas" in r.output
    assert r.output.count("\n") == 1


def test_resume_of_an_experiment_started_from_python_says_how(tmp_path):
    import memnas
    import toyspace

    url = f"sqlite:///{tmp_path}/py.db"
    memnas.Experiment(name="py", space=toyspace.point_space(), evaluator=toyspace.evaluate,
                      algorithm="random", store=url).run(max_trials=2, executor="local")
    r = CliRunner().invoke(main, ["resume", "py", "--store", url])
    assert r.exit_code == 2 and "was not started from an experiment file" in r.output


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory):
    """A store with 300 synthetic trials (accuracy max, params min), filled in bulk."""
    from memnas.bench.synthetic import fill

    url = f"sqlite:///{tmp_path_factory.mktemp('cli_plot')}/plot.db"
    fill(url, 300, name="plotme")
    return url


def test_export_plot_writes_pareto_progress_and_hypervolume_images(synthetic_store, tmp_path):
    paths = [tmp_path / "pareto.png", tmp_path / "progress.png", tmp_path / "hypervolume.pdf"]
    args = ["export", "plotme", "--store", synthetic_store]
    for p in paths:
        args += ["--plot", str(p)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    for p in paths:
        assert p.stat().st_size > 10_000, p
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[2].read_bytes()[:5] == b"%PDF-"
    assert "wrote pareto plot of 'plotme'" in out.output


def test_export_plot_kind_option_and_axes(synthetic_store, tmp_path):
    p = tmp_path / "figure.svg"
    out = CliRunner().invoke(main, ["export", "plotme", "--store", synthetic_store, "--plot",
                                    str(p), "--kind", "pareto", "--x", "loss", "--y",
                                    "latency_ms"])
    assert out.exit_code == 0, out.output
    assert "latency_ms" in p.read_text()


@pytest.mark.parametrize("extra,msg", [
    (["--plot", "figure.png"], "figure.png' wants; name the file after one of"),
    (["--plot", "pareto.jpg"], "must end in one of .png, .pdf, .svg"),
    (["--plot", "pareto.png", "--x", "nope"], "has no value 'nope' to plot"),
])
def test_export_plot_bad_input_is_one_line(synthetic_store, tmp_path, extra, msg):
    out = CliRunner().invoke(main, ["export", "plotme", "--store", synthetic_store,
                                    *[str(tmp_path / a) if a.endswith((".png", ".jpg"))
                                      else a for a in extra]])
    assert out.exit_code == 2
    assert msg in out.output and out.output.count("\n") == 1


def _score_y(c, ctx):
    """accuracy = y / 3 (max), params = 10 y (min): both choices are on the front."""
    return {"accuracy": c["y"] / 3, "params": 10.0 * c["y"]}


def test_show_lists_each_architecture_of_the_front_once(tmp_path):
    import memnas
    import pyglove as pg

    url = f"sqlite:///{tmp_path}/twins.db"
    memnas.Experiment(name="twins", space=pg.Dict(y=pg.oneof([1, 2])), evaluator=_score_y,
                      algorithm="random", objectives={"accuracy": "max", "params": "min"},
                      store=url).run(max_trials=6, workers=1, executor="local")
    r = CliRunner().invoke(main, ["show", "twins", "--store", url])
    assert r.exit_code == 0, r.output
    assert "4 cached, 2 completed" in r.output
    assert "Pareto front (accuracy vs params): 2 trials" in r.output
    rows = [ln for ln in r.output.splitlines() if ln.startswith("    #")]
    assert len(rows) == 2 and sum("(cached twin" in ln for ln in rows) >= 1
    r = CliRunner().invoke(main, ["export", "twins", "--store", url, "--format", "csv"])
    header = r.output.splitlines()[0].split(",")
    assert header[:6] == ["number", "status", "summary", "decisions", "accuracy", "params"]
    assert header[6] == "y"  # one column per decision, holding the chosen value
    assert {ln.split(",")[0:2][1] for ln in r.output.splitlines()[1:]} == {"completed", "cached"}


def test_run_batch_option_runs_and_bad_values_are_named(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    f = _write_exp(tmp_path / "batch_exp.py", url)
    r = CliRunner().invoke(main, ["run", f, "--max-trials", "6", "--executor", "local",
                                  "--batch", "auto"])
    assert r.exit_code == 0, r.output
    assert _lines_in_store(url) == [("e", 6)]
    for bad in ("0", "many", "-3"):
        r = CliRunner().invoke(main, ["run", f, "--max-trials", "8", "--executor", "local",
                                      "--batch", bad])
        assert r.exit_code == 2 and f"expected a positive integer or 'auto', got '{bad}'" in \
            r.output, r.output
    assert _lines_in_store(url) == [("e", 6)]


def test_run_bad_name_or_store_is_one_line_and_writes_nothing(tmp_path):
    db = tmp_path / "never.db"
    f = _write_exp(tmp_path / "named_exp.py", f"sqlite:///{db}")
    cases = [
        ("--name", "", "error: experiment name must be a non-empty string of at most 200 "
                       "characters, got ''"),
        ("--name", "   ", "error: experiment name must be a non-empty string"),
        ("--name", "n" * 300, "error: experiment name must be a non-empty string of at most 200 "
                              "characters, got 'nnn"),
        ("--store", "", "error: store must be a SQLAlchemy URL string, got ''"),
    ]
    for option, value, msg in cases:
        r = CliRunner().invoke(main, ["run", f, "--max-trials", "2", "--executor", "local",
                                      option, value])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(msg) and r.output.count("\n") == 1, r.output
        assert not db.exists()  # refused before the store was opened
