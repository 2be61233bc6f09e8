"""The `memnas` command: run a file through Ray, then ls, show, export and bad input."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import memnas
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


@pytest.mark.parametrize("source,where,what", [
    ("import memnas\nx = (1,\ndef f(:\n    pass\n", "line 3", "SyntaxError: "),
    ("import memnas\n\n\ndef make():\n    return {}['gone']\n\n\nexperiment = make()\n",
     "line 5", "KeyError: 'gone'"),
    ("import json\nexperiment = json.loads('{not json')\n", "line 2",
     "JSONDecodeError: Expecting property name"),
])
def test_run_on_a_broken_file_is_one_line_naming_file_line_and_exception(tmp_path, source,
                                                                        where, what):
    f = tmp_path / f"broken_{abs(hash(source)) % 10**8}.py"
    f.write_text(source)
    r = CliRunner().invoke(main, ["run", str(f), "--executor", "local"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"error: experiment file {str(f)!r} failed at {where}: {what}")
    assert r.output.count("\n") == 1, r.output


def _precise(c, ctx):
    return {"accuracy": 0.1234567890123456789 + c["y"] / 3, "params": 1e-13 * c["y"]}


@pytest.fixture
def precise_store(tmp_path):
    import memnas
    import pyglove as pg

    url = f"sqlite:///{tmp_path}/precise.db"
    memnas.Experiment(name="precise", space=pg.Dict(y=pg.oneof([1, 2])), evaluator=_precise,
                      algorithm="random", objectives={"accuracy": "max", "params": "min"},
                      store=url, cache=False).run(max_trials=2, workers=1, executor="local")
    return url


def test_export_json_keeps_every_float_digit(precise_store, tmp_path):
    out = tmp_path / "t.json"
    r = CliRunner().invoke(main, ["export", "precise", "--store", precise_store, "--format",
                                  "json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    for row in rows:
        y = row["decisions"]["y"]
        assert row["accuracy"] == 0.1234567890123456789 + y / 3  # bit for bit, as in CSV
        assert row["params"] == 1e-13 * y
        assert row["error"] is None and row["started_at"].startswith("20")


@pytest.mark.parametrize("args", [["--format", "csv", "-o", "missing_folder/out.csv"],
                                  ["--format", "json", "-o", "missing_folder/out.json"],
                                  ["--plot", "missing_folder/pareto.png"]])
def test_export_into_a_missing_folder_is_one_line(precise_store, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["export", "precise", "--store", precise_store, *args])
    assert r.exit_code == 2, r.output
    assert r.output == f"error: cannot write {args[-1]!r}: folder 'missing_folder' does not " \
                       "exist\n"


def _rows_of(url, name):
    """How many rows experiment ``name`` has in each table (by its id)."""
    import sqlalchemy as sa

    from memnas.store import Store

    s = Store(url, read_only=True)
    row = s.experiment(name)
    if row is None:
        return None
    trials = "SELECT id FROM trials WHERE experiment_id = :e"
    counts = {}
    with s.engine.connect() as conn:
        for table, where in (("trials", "experiment_id = :e"),
                             ("feedback", "experiment_id = :e"),
                             ("curve_points", f"trial_id IN ({trials})"),
                             ("artifacts", f"trial_id IN ({trials})")):
            counts[table] = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"),
                                         {"e": row["id"]}).scalar()
    s.close()
    return counts


def _two_experiments(url):
    """Experiments 'a' (3 trials, curves, feedback, an artifact) and 'keep' (2 trials)."""
    import numpy as np

    import memnas
    import toyspace
    from memnas.store import Store

    for name, n in (("a", 3), ("keep", 2)):
        memnas.Experiment(name=name, space=toyspace.point_space(), evaluator=toyspace.evaluate,
                          algorithm="random", store=url).run(max_trials=n, executor="local")
    s = Store(url)
    s.save_artifact(s.trials(s.experiment("a")["id"])[0]["id"], "output", {"w": np.ones(3)})
    s.close()


def _held(url, name, driver="elsewhere:1"):
    """Marks ``name`` as run by a live driver on another host (fresh heartbeat)."""
    from memnas.store import Store, utcnow

    s = Store(url)
    s.update_experiment(s.experiment(name)["id"], status="running", driver=driver,
                        heartbeat_at=utcnow())
    s.close()


def _one_error_line(r, start):
    assert r.exit_code == 2, r.output
    assert r.output.startswith(start) and r.output.count("\n") == 1, r.output


def test_rm_deletes_an_experiment_with_its_rows_after_asking(store_url):
    _two_experiments(store_url)
    a, keep = _rows_of(store_url, "a"), _rows_of(store_url, "keep")
    assert a["trials"] == 3 and a["curve_points"] > 0 and a["feedback"] == 3 \
        and a["artifacts"] == 1
    r = CliRunner().invoke(main, ["rm", "a", "--store", store_url], input="n\n")
    assert r.exit_code == 1 and "delete experiment 'a' (3 trials) from" in r.output
    assert _rows_of(store_url, "a") == a                       # answered no: kept
    r = CliRunner().invoke(main, ["rm", "a", "--store", store_url], input="y\n")
    assert r.exit_code == 0 and "deleted experiment 'a' (3 trials)" in r.output, r.output
    assert _rows_of(store_url, "a") is None and _rows_of(store_url, "keep") == keep
    import sqlalchemy as sa

    from memnas.store import Store

    s = Store(store_url)
    with s.engine.connect() as conn:  # nothing of 'a' is left in any table
        for table in ("trials", "feedback", "curve_points", "artifacts"):
            left = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            assert left == sum(v for k, v in keep.items() if k == table), table
    s.close()
    _one_error_line(CliRunner().invoke(main, ["rm", "a", "--store", store_url, "--yes"]),
                    "error: no experiment named 'a' in ")
    _held(store_url, "keep")
    _one_error_line(CliRunner().invoke(main, ["rm", "keep", "--store", store_url, "--yes"]),
                    "error: experiment 'keep' is being run by driver elsewhere:1 (heartbeat ")
    assert _rows_of(store_url, "keep") == keep


def test_mv_renames_with_its_trials_and_refuses_bad_names(store_url):
    import memnas
    import toyspace

    _two_experiments(store_url)
    a = _rows_of(store_url, "a")
    r = CliRunner().invoke(main, ["mv", "a", "b", "--store", store_url])
    assert r.exit_code == 0 and "renamed experiment 'a' to 'b'" in r.output, r.output
    assert _rows_of(store_url, "a") is None and _rows_of(store_url, "b") == a
    result = memnas.Experiment(name="b", space=toyspace.point_space(),
                               evaluator=toyspace.evaluate, algorithm="random",
                               store=store_url).run(max_trials=5, executor="local")
    assert list(result.trials()["number"]) == list(range(5))  # continued under its new name
    for args, msg in [
        (["b", "keep"], "error: experiment 'keep' already exists in "),
        (["b", "b"], "error: experiment 'b' already exists in "),
        (["nope", "x"], "error: no experiment named 'nope' in "),
        (["b", ""], "error: new experiment name must be a non-empty string of at most 200 "
                    "characters, got ''"),
        (["b", "n" * 201], "error: new experiment name must be a non-empty string"),
    ]:
        _one_error_line(CliRunner().invoke(main, ["mv", *args, "--store", store_url]), msg)
    _held(store_url, "b")
    _one_error_line(CliRunner().invoke(main, ["mv", "b", "c", "--store", store_url]),
                    "error: experiment 'b' is being run by driver elsewhere:1 (heartbeat ")
    assert _rows_of(store_url, "c") is None and _rows_of(store_url, "b")["trials"] == 5


def test_rm_and_mv_on_a_missing_store_create_nothing(tmp_path):
    db = tmp_path / "typo.db"
    for args in (["rm", "a", "--yes"], ["mv", "a", "b"]):
        _one_error_line(CliRunner().invoke(main, [*args, "--store", f"sqlite:///{db}"]),
                        "error: cannot open store ")
    assert not db.exists()


def test_show_prints_the_accuracy_state_bytes_front_of_a_memory_search(tmp_path):
    url = f"sqlite:///{tmp_path}/memory.db"
    path = os.path.join(HERE, "cli_files", "memory_experiment.py")
    r = CliRunner().invoke(main, ["run", path, "--max-trials", "5", "--executor", "local",
                                  "--store", url])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["show", "cli-memory", "--store", url])
    assert r.exit_code == 0 and "Pareto front (accuracy vs state_bytes)" in r.output, r.output
    front = [line for line in r.output.splitlines() if "state_bytes=" in line and "#" in line]
    assert front and all(line.split("state_bytes=")[1].split()[0].isdigit() for line in front)
    rows = memnas.load("cli-memory", store=url).trials()
    for cost in ("state_bytes", "flops_per_token", "params", "latency_ms"):
        assert rows[cost].notna().all() and (rows[cost] > 0).all(), cost
