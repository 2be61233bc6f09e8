"""The `memnas` command: run, resume, ls, show, rm, mv, export, dashboard, bench."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from memnas.errors import ConfigError, MemnasError
from memnas.summary import print_summary as _print_summary

_STORE_HELP = "SQLAlchemy URL of the store (default: $MEMNAS_STORE or sqlite:///memnas.db)."


def _default_store() -> str:
    return os.environ.get("MEMNAS_STORE", "sqlite:///memnas.db")


class _Group(click.Group):
    """Turns memnas's own errors into a one-line message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemnasError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="memnas")
def main() -> None:
    """memnas: neural-architecture search over memory architectures."""


def _batch(value: str) -> int | str:
    """The --batch option: "auto" or a positive integer."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"expected a positive integer or 'auto', got {value!r}")
    return n


def _patience(*given: float | None) -> dict[str, float]:
    """``store_patience_s`` for `Experiment.run`: the first value given, else its default."""
    found = [g for g in given if g is not None]
    return {"store_patience_s": float(found[0])} if found else {}


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--max-trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Finished trials wanted in the experiment (an existing one is continued).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Trials evaluated at once.")
@click.option("--store", default=None, help="Store URL (default: the experiment file's).")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Address of a running Ray cluster (default: start a local Ray).")
@click.option("--name", default=None, help="Experiment name (default: the experiment file's).")
@click.option("--executor", type=click.Choice(["ray", "tune", "local"]), default="ray",
              show_default=True, help="Ray tasks, Ray Tune (with a scheduler), or in-process.")
@click.option("--scheduler", type=click.Choice(["asha", "fifo"]), default=None,
              help="Ray Tune scheduler (with --executor tune; default asha).")
@click.option("--batch", default="1", show_default=True, callback=lambda c, p, v: _batch(v),
              help="Trials per task: an integer, or 'auto' for short trials (tabular "
                   "benchmarks): several per task once trials are timed under 10 ms.")
@click.option("--max-cost", type=float, default=None,
              help="With a multi-fidelity algorithm: stop once the trials spent this much "
                   "budget (in its budget units, e.g. steps).")
@click.option("--warm-start", multiple=True,
              help="A finished experiment on the same space to learn from first (repeatable).")
@click.option("--store-patience", type=click.FloatRange(min=0), default=None,
              help="Seconds to wait for an unreachable store (a database restart) before "
                   "stopping; running trials go on meanwhile (default 300).")
def run(file: str, max_trials: int, workers: int, store: str | None, ray_address: str | None,
        name: str | None, executor: str, scheduler: str | None, batch: int | str,
        max_cost: float | None, warm_start: tuple[str, ...],
        store_patience: float | None) -> None:
    """Run the experiment defined in FILE (`experiment = memnas.Experiment(...)`)."""
    from memnas.loader import load_experiment_file

    experiment = load_experiment_file(file)
    changes = {k: v for k, v in (("name", name), ("store", store),
                                 ("warm_start", list(warm_start) or None)) if v is not None}
    if changes:  # a new, validated Experiment: a bad --name or --store is refused here
        experiment = experiment.replace(**changes)
    algo = experiment.algorithm if isinstance(experiment.algorithm, str) else \
        type(experiment.algorithm).__name__
    click.echo(f"memnas: running {experiment.name!r} ({algo}, {max_trials} trials, {workers} "
               f"workers, {executor}) into {experiment.store}", err=True)
    result = experiment.run(max_trials=max_trials, workers=workers, executor=executor,
                            ray_address=ray_address, progress=True, scheduler=scheduler,
                            batch=batch, max_cost=max_cost,
                            **_patience(store_patience))
    _print_summary(result)
    store_arg = f" --store {experiment.store}"
    click.echo(f"\nnext:  memnas show {experiment.name}{store_arg}\n"
               f"       memnas dashboard{store_arg}")


@main.command()
@click.argument("name")
@click.option("--store", default=_default_store, help=_STORE_HELP)
@click.option("--max-trials", type=click.IntRange(min=1), default=None,
              help="Finished trials wanted (default: what the last run asked for).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials evaluated at once (default: as in the last run).")
@click.option("--ray-address", default=None, envvar="RAY_ADDRESS",
              help="Address of a running Ray cluster (default: start a local Ray).")
@click.option("--executor", type=click.Choice(["ray", "tune", "local"]), default=None)
@click.option("--store-patience", type=click.FloatRange(min=0), default=None,
              help="Seconds to wait for an unreachable store (a database restart) before "
                   "stopping; running trials go on meanwhile (default 300).")
def resume(name: str, store: str, max_trials: int | None, workers: int | None,
           ray_address: str | None, executor: str | None,
           store_patience: float | None) -> None:
    """Continue experiment NAME after a crash: replay stored results, rerun what was running."""
    from memnas.errors import ConfigError
    from memnas.loader import load_experiment_file
    from memnas.store import Store

    s = Store(store)
    row = s.require_experiment(name)
    s.close()
    config = row["config"] or {}
    last = config.get("last_run") or {}
    module_file = config.get("module_file")
    if not module_file:
        raise ConfigError(f"experiment {name!r} was not started from an experiment file; "
                          "continue it by calling experiment.run(...) again in Python")
    experiment = load_experiment_file(module_file).replace(
        name=name, store=s.url, warm_start=config.get("warm_start") or None)
    max_trials = max_trials or last.get("max_trials") or 20
    workers = workers or last.get("workers") or 1
    executor = executor or (last.get("executor") if last.get("executor") in ("ray", "tune", "local")
                            else "ray")
    click.echo(f"memnas: resuming {name!r} to {max_trials} trials with {workers} workers "
               f"({executor}) from {module_file}", err=True)
    batch = last.get("batch", 1) if executor != "tune" else 1
    result = experiment.run(max_trials=max_trials, workers=workers, executor=executor,
                            ray_address=ray_address, progress=True, batch=batch,
                            max_cost=last.get("max_cost"),
                            **_patience(store_patience, last.get("store_patience_s")))
    _print_summary(result)


@main.command(name="ls")
@click.option("--store", default=_default_store, help=_STORE_HELP)
def ls_(store: str) -> None:
    """List the experiments in a store."""
    from memnas.store import Store
    from memnas.store.liveness import shown_status

    rows = Store(store, read_only=True).experiments()
    if not rows:
        click.echo(f"no experiments in {store}")
        return
    click.echo(f"{'name':<28} {'status':<12} {'algorithm':<12} {'done':>5} {'failed':>6}  objectives")
    for e in rows:
        c = e["counts"]
        done = c.get("completed", 0) + c.get("cached", 0)
        objs = ", ".join(f"{k} ({v})" for k, v in e["objectives"].items())
        click.echo(f"{e['name']:<28} {shown_status(e):<12} {e['algorithm'].get('name', '?'):<12} "
                   f"{done:>5} {c.get('failed', 0):>6}  {objs}")


@main.command()
@click.argument("name")
@click.option("--store", default=_default_store, help=_STORE_HELP)
def show(name: str, store: str) -> None:
    """Show an experiment: counts, best trials and its Pareto front."""
    from memnas.result import Result

    _print_summary(Result(name, store))


@main.command(name="rm")
@click.argument("name")
@click.option("--store", default=_default_store, help=_STORE_HELP)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
def rm(name: str, store: str, yes: bool) -> None:
    """Delete experiment NAME with its trials, curves and artifacts (one transaction)."""
    from memnas.runner.claim import remove

    s = _existing_store(store)
    try:
        trials = {e["name"]: e["num_trials"] for e in s.experiments()}
        if name not in trials:
            s.require_experiment(name)  # raises, naming the experiments there are
        what = f"experiment {name!r} ({trials[name]} trials)"
        if not yes:
            click.confirm(f"delete {what} from {s.shown_url}?", abort=True, err=True)
        remove(s, name)
    finally:
        s.close()
    click.echo(f"deleted {what} from {s.shown_url}", err=True)


@main.command(name="mv")
@click.argument("name")
@click.argument("new_name")
@click.option("--store", default=_default_store, help=_STORE_HELP)
def mv(name: str, new_name: str, store: str) -> None:
    """Rename experiment NAME to NEW_NAME, with its trials (one statement)."""
    from memnas.runner.claim import rename

    s = _existing_store(store)
    try:
        rename(s, name, new_name)
    finally:
        s.close()
    click.echo(f"renamed experiment {name!r} to {new_name!r} in {s.shown_url}", err=True)


@main.command()
@click.argument("name")
@click.option("--store", default=_default_store, help=_STORE_HELP)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: standard output).")
@click.option("--plot", "plots", type=click.Path(dir_okay=False), multiple=True,
              help="Write a figure instead (repeatable): pareto.png, progress.png, "
                   "hypervolume.pdf, ...; the file name picks the kind unless --kind.")
@click.option("--kind", type=click.Choice(["pareto", "progress", "hypervolume"]), default=None,
              help="Figure of every --plot file (default: named in the file name).")
@click.option("--x", "plot_x", default=None, help="x value of a Pareto plot (default: 1st objective).")
@click.option("--y", "plot_y", default=None, help="y value of a Pareto plot (default: 2nd objective).")
def export(name: str, store: str, fmt: str, output: str | None, plots: tuple[str, ...],
           kind: str | None, plot_x: str | None, plot_y: str | None) -> None:
    """Export an experiment's trials as CSV or JSON, or its figures as images (--plot)."""
    if plots:
        from memnas.dashboard.export import plot_kind, write_plot
        from memnas.store import normalize_url

        for path in plots:
            plot_kind(path, kind)  # a bad name or folder fails before anything is drawn
            _check_folder(path)
        for path in plots:
            try:
                drawn = write_plot(normalize_url(store), name, path, kind, plot_x, plot_y)
            except OSError as e:
                raise ConfigError(f"cannot write {path!r}: {e.strerror or e}") from None
            click.echo(f"wrote {drawn} plot of {name!r} to {path}", err=True)
        return
    from memnas.result import Result

    if output:
        _check_folder(output)
    df = Result(name, store).trials()
    if fmt == "csv":
        df = df.assign(decisions=df["decisions"].map(lambda d: json.dumps(d, sort_keys=True)))
        text = df.to_csv(index=False)
    else:
        text = _records_json(df)
    if output:
        try:
            with open(output, "w") as f:
                f.write(text)
        except OSError as e:
            raise ConfigError(f"cannot write {output!r}: {e.strerror or e}") from None
        click.echo(f"wrote {len(df)} trials to {output}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.option("--store", default=_default_store, help=_STORE_HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
def dashboard(store: str, port: int) -> None:
    """Open the Streamlit dashboard on 127.0.0.1 (read-only on the store)."""
    from memnas.dashboard import check_port, launch, ssh_hint
    from memnas.store import Store, normalize_url

    Store(store, read_only=True).close()  # a bad URL fails here, in one line
    check_port(port)  # a taken port too, before the URL is printed and the caches warmed
    click.echo(f"memnas dashboard: http://127.0.0.1:{port}  (store {normalize_url(store)})", err=True)
    if hint := ssh_hint(port):  # on a remote host: the tunnel to open from a laptop
        click.echo(f"memnas dashboard: {hint}", err=True)
    sys.exit(launch(normalize_url(store), port=port))


@main.command()
@click.argument("name")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures to this JSON file.")
@click.option("--quick", is_flag=True, help="A smaller, faster version (for CI smoke tests).")
@click.option("--seeds", type=click.IntRange(1), default=None,
              help="Seeds (runs per method): algorithms, efficiency, grokking, lth.")
@click.option("--png-dir", type=click.Path(file_okay=False),
              help="Where to write the PNG figures: efficiency, grokking.")
def bench(name: str, json_path: str | None, quick: bool, seeds: int | None,
          png_dir: str | None) -> None:
    """Run benchmark NAME and print its figures (see `memnas bench list`)."""
    from memnas.bench import available, run_bench

    if name == "list":
        click.echo("\n".join(available()))
        return
    run_bench(name, json_path=json_path, quick=quick, seeds=seeds, png_dir=png_dir)
    if json_path:
        click.echo(f"wrote {json_path}", err=True)


def _existing_store(url: str) -> Any:
    """The store at ``url`` opened for writing, if it exists: a missing SQLite file or a
    database that is no memnas store fails in one line, and nothing is created."""
    from memnas.store import Store

    Store(url, read_only=True).close()
    return Store(url)


def _check_folder(path: str) -> None:
    """Refuses an output file whose folder does not exist (before anything is read)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write {path!r}: folder {os.path.dirname(path) or folder!r} "
                          "does not exist")


def _records_json(df: Any) -> str:
    """Trials as a JSON array of records with every float at full precision (pandas'
    ``to_json`` rounds to 10 digits); NaN and missing values as null, times in ISO 8601."""
    import math

    import pandas as pd

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, pd.Timestamp):
            return v.isoformat()
        if v is None or v is pd.NaT or v is pd.NA:
            return None
        v = v.item() if hasattr(v, "item") and not isinstance(v, str) else v
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return json.dumps([{str(k): plain(v) for k, v in r.items()}
                       for r in df.to_dict(orient="records")], indent=1)


if __name__ == "__main__":  # pragma: no cover
    main()

