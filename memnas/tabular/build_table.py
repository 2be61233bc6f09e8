"""Builds the tabular MQAR benchmark: trains every architecture of a space with memnas itself."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import pyglove as pg

from memnas.errors import ConfigError
from memnas.measurement import Context, Measurement
from memnas.records import TrialStatus
from memnas.tabular.table import (TABLE_PATH, TABLE_SEEDS, TABLE_TASK, Table, all_dnas,
                                  dna_key, save_table, space_hash, tabular_space)


@dataclasses.dataclass(frozen=True)
class SeededTraining:
    """Trains one candidate once per fixed seed and reports each seed's figures.

    A picklable memnas evaluator wrapping a `TrainEvaluator`. The seeds are fixed
    (not the trial's seed), so a table is reproducible whatever order the trials
    run in. Metrics ``accuracy`` and ``loss`` (means over seeds) and
    ``accuracy_s<seed>``, ``loss_s<seed>``; costs ``params``, ``latency_ms``
    (first seed) and ``train_time_s<seed>`` (seconds of training and evaluation).
    With a trainer's ``eval_at`` checkpoints also ``accuracy_at_<b>_s<seed>``,
    ``loss_at_<b>_s<seed>`` and costs ``train_s_at_<b>_s<seed>``; ``state_bytes``
    and ``flops_per_token`` when the trainer measures them.

    Attributes:
      trainer: The `TrainEvaluator` run for each seed.
      seeds: The training seeds.
    """

    trainer: Any
    seeds: tuple[int, ...] = TABLE_SEEDS

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains ``candidate`` once per seed on one CPU thread; see the class docstring."""
        import torch

        ctx = ctx if ctx is not None else Context()
        metrics: dict[str, float] = {}
        costs: dict[str, float] = {}
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for seed in self.seeds:
                start = time.perf_counter()
                m = self.trainer(candidate, Context(seed=seed, budget=ctx.budget, num_cpus=1))
                costs[f"train_time_s{seed}"] = time.perf_counter() - start
                metrics[f"accuracy_s{seed}"] = m.metrics["accuracy"]
                metrics[f"loss_s{seed}"] = m.metrics["loss"]
                for name, value in m.metrics.items():
                    if name.startswith(("accuracy_at_", "loss_at_")):
                        metrics[f"{name}_s{seed}"] = value
                for name, value in m.costs.items():
                    if name.startswith("train_s_at_"):
                        costs[f"{name}_s{seed}"] = value
                    elif name in ("params", "latency_ms", "state_bytes", "flops_per_token"):
                        costs.setdefault(name, value)
        finally:
            torch.set_num_threads(previous)
        for name in ("accuracy", "loss"):
            metrics[name] = sum(metrics[f"{name}_s{s}"] for s in self.seeds) / len(self.seeds)
        return Measurement(metrics=metrics, costs=costs)


def table_trainer(steps: int = 400) -> Any:
    """The training setting of the shipped table: MQAR(vocab 64, 16 tokens, 4 pairs).

    ``steps`` AdamW steps of 32 sequences (lr 3e-3, weight decay 0.1), held-out
    accuracy on 512 sequences; about 0.5-1.5 s per seed on one CPU thread.
    """
    from memnas.evaluators import MQAR, TrainEvaluator

    return TrainEvaluator(task=MQAR(**TABLE_TASK), steps=steps, batch_size=32, lr=3e-3,
                          weight_decay=0.1, eval_examples=512)


def build_table(out: str, space: Any = None, trainer: Any = None,
                seeds: Sequence[int] = TABLE_SEEDS, store: str | None = None,
                workers: int = 2, executor: str = "ray", name: str = "tabular-mqar",
                progress: bool = False, command: str = "python -m memnas.tabular.build_table",
                ) -> Table:
    """Evaluates every architecture of ``space`` with memnas and writes the table to ``out``.

    Runs a `memnas.Experiment` whose algorithm is PyGlove's exhaustive
    ``pg.geno.Sweeping`` (each point proposed once), the equivalence cache off (every
    point trained for real), the evaluator `SeededTraining` (each point trained
    once per seed), then reads the trials back from the store.

    Args:
      out: Path of the table file (gzipped JSON).
      space: A space without float decisions; default `tabular_space()`.
      trainer: The per-seed `TrainEvaluator`; default `table_trainer()`.
      seeds: Training seeds.
      store: SQLAlchemy URL of the store; default a fresh SQLite file in a temp folder.
      workers: Trials run at the same time.
      executor: ``"ray"`` (default) or ``"local"``.
      name: Experiment name in the store.
      progress: Show memnas's progress line.
      command: The command line recorded in the metadata.

    Returns:
      The table written.

    Raises:
      ConfigError: a trial failed, or the store lacks some architecture.
    """
    import memnas

    space = tabular_space() if space is None else space
    trainer = table_trainer() if trainer is None else trainer
    evaluator = SeededTraining(trainer=trainer, seeds=tuple(int(s) for s in seeds))
    dnas = all_dnas(space)
    if store is None:
        store = f"sqlite:///{os.path.join(tempfile.mkdtemp(prefix='memnas-table-'), 'table.db')}"
    experiment = memnas.Experiment(name=name, space=space, evaluator=evaluator,
                                   algorithm=pg.geno.Sweeping(), objectives={"accuracy": "max"},
                                   store=store, cache=False)
    start = time.perf_counter()
    result = experiment.run(max_trials=len(dnas), workers=workers, executor=executor,
                            progress=progress)
    wall = time.perf_counter() - start
    del result
    budgets = sorted(int(b) for b in getattr(trainer, "eval_at", ()) if 0 < b <= trainer.steps)
    if budgets and budgets[-1] != trainer.steps:
        budgets.append(int(trainer.steps))
    rows = _rows(experiment.store, name, space, evaluator.seeds, budgets)
    missing = [dna_key(d) for d in dnas if dna_key(d) not in rows]
    if missing:
        raise ConfigError(f"the store {store!r} lacks {len(missing)} of {len(dnas)} "
                          f"architectures, e.g. {missing[:3]}")
    metadata = {
        "space": pg.to_json(space), "space_hash": space_hash(space), "size": len(rows),
        "task": {"name": "MQAR", **{k: repr(v) if not isinstance(v, (int, float, str, bool))
                                    else v for k, v in dataclasses.asdict(trainer.task).items()}},
        "training": {k: v for k, v in dataclasses.asdict(trainer).items() if k != "task"},
        "seeds": list(evaluator.seeds), "memnas_version": memnas.__version__,
        "budgets": budgets, "version": 2 if budgets else 1,
        "objectives": sorted(["accuracy", "loss"] + [k for k in next(iter(rows.values()))
                                                     if k in _COSTS]),
        "torch_version": _torch_version(), "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "generation": {"wall_s": round(wall, 1), "workers": workers, "executor": executor,
                       "cpus": os.cpu_count(), "command": command},
    }
    table = Table(rows=rows, metadata=metadata)
    save_table(table, out)
    return table


_COSTS = ("params", "latency_ms", "state_bytes", "flops_per_token")


def _rows(url: str, name: str, space: Any, seeds: Sequence[int],
          budgets: Sequence[int] = ()) -> dict[str, dict[str, Any]]:
    from memnas.runner import dna_from_json
    from memnas.store import Store

    store = Store(url, read_only=True)
    exp = store.require_experiment(name)
    spec = pg.dna_spec(space)
    rows: dict[str, dict[str, Any]] = {}
    for trial in store.trials(exp["id"]):
        if trial["status"] != TrialStatus.COMPLETED:
            raise ConfigError(f"trial #{trial['number']} ({trial.get('summary')}) is "
                              f"{trial['status']}: {(trial.get('error') or '').strip()[-300:]}")
        key = dna_key(dna_from_json(trial["dna"], spec))
        m, c = trial["metrics"], trial["costs"]
        rows[key] = {
            "summary": trial.get("summary"), "params": c["params"],
            "latency_ms": round(c["latency_ms"], 4),
            "seeds": {str(s): {"accuracy": m[f"accuracy_s{s}"], "loss": m[f"loss_s{s}"],
                               "train_time_s": round(c[f"train_time_s{s}"], 3)} for s in seeds},
        }
        for cost in ("state_bytes", "flops_per_token"):
            if cost in c:
                rows[key][cost] = c[cost]
        for s in seeds if budgets else ():
            rows[key]["seeds"][str(s)]["budgets"] = {
                str(b): {"accuracy": m[f"accuracy_at_{b}_s{s}"], "loss": m[f"loss_at_{b}_s{s}"],
                         "train_time_s": round(c[f"train_s_at_{b}_s{s}"], 3)} for b in budgets}
    return rows


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m memnas.tabular.build_table [--out FILE] [--steps N] [--workers W]``."""
    parser = argparse.ArgumentParser(prog="python -m memnas.tabular.build_table",
                                     description=__doc__)
    parser.add_argument("--v2", action="store_true",
                        help="the v2 table: second-wave mixers, a learning curve of 4 budgets")
    parser.add_argument("--out", default=None, help="table file (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per seed (default 400; v2: 400, budgets 50/100/200/400)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="ray", choices=("ray", "local"))
    parser.add_argument("--store", default=None, help="store URL (default: a temp SQLite file)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.v2:
        from memnas.tabular.v2 import TABLE_V2_PATH, table_v2_trainer, tabular_space_v2

        args.out = args.out or TABLE_V2_PATH
        trainer = table_v2_trainer() if args.steps is None else table_v2_trainer(args.steps)
        space, name = tabular_space_v2(), "tabular-mqar-v2"
    else:
        args.out = args.out or TABLE_PATH
        trainer, space, name = table_trainer(args.steps or 400), None, "tabular-mqar"
    command = "python -m memnas.tabular.build_table " + " ".join(argv if argv is not None
                                                                   else sys.argv[1:])
    table = build_table(args.out, space=space, trainer=trainer, store=args.store,
                        workers=args.workers, executor=args.executor, name=name,
                        progress=sys.stderr.isatty(), command=command.strip())
    accuracies = sorted(table.accuracies().values())
    print(f"{len(table)} architectures x {len(table.metadata['seeds'])} seeds in "
          f"{time.perf_counter() - start:.0f} s -> {args.out} ({os.path.getsize(args.out)} bytes); "
          f"accuracy {accuracies[0]:.3f} .. {accuracies[-1]:.3f}, "
          f"top-1% threshold {table.top_threshold():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
