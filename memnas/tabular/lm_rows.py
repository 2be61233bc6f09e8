"""Adds language-modelling rows to a table: bits per byte of its homogeneous stacks on real text."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from typing import Any, Sequence

import pyglove as pg

from memnas.errors import ConfigError
from memnas.records import TrialStatus
from memnas.tabular.table import Table, all_dnas, dna_key, load_table, save_table

LM_SETTINGS = {"seq_len": 128, "max_bytes": 2_000_000, "steps": 300, "batch_size": 16,
               "lr": 3e-3, "eval_examples": 64}
"""The language-modelling setting of the shipped v2 table's LM rows (stdlib bytes)."""


def homogeneous_keys(table: Table) -> list[str]:
    """Keys of the rows whose layers all use the same mixer (1 layer, or 2 of one kind).

    In the v2 table: 16 mixer configurations x 2 depths x 2 widths = 64 rows,
    every mixer family at both widths and depths.
    """
    keys = []
    for key, row in table.rows.items():
        mixers = row["summary"].split(" | ")[1].split(" > ")
        if len(set(mixers)) == 1:
            keys.append(key)
    return sorted(keys)


def lm_candidate(candidate: Any, seq_len: int) -> Any:
    """The same architecture for byte-level text: vocabulary 256, positions up to ``seq_len``."""
    return candidate.clone(deep=True, override={"vocab_size": 256, "max_len": seq_len})


def add_lm_rows(path: str, out: str | None = None, keys: Sequence[str] | None = None,
                settings: dict[str, Any] | None = None, workers: int = 2,
                executor: str = "ray", store: str | None = None, progress: bool = False,
                command: str = "python -m memnas.tabular.lm_rows") -> Table:
    """Trains the chosen rows' architectures on stdlib bytes with memnas; stores bits per byte.

    Runs one `memnas.Experiment` over the chosen architectures (re-shaped by
    `lm_candidate`), sweeping each once with `LanguageModelEvaluator` on
    `TextCorpus` (the running Python's standard library), and writes
    ``row["lm"] = {"bits_per_byte", "loss", "tokens_per_s", "state_bytes"}`` into the
    table, the setting and wall time into ``metadata["lm"]``.

    Args:
      path: The table to extend.
      out: Where to write it; default ``path``.
      keys: Rows to train; default `homogeneous_keys`.
      settings: Overrides of `LM_SETTINGS`.
      workers, executor, store, progress: As `build_table`.
      command: The command line recorded in the metadata.

    Raises:
      ConfigError: a trial failed, or a key is not in the table.
    """
    import memnas
    from memnas.evaluators import LanguageModelEvaluator, TextCorpus

    table = load_table(path)
    cfg = {**LM_SETTINGS, **(settings or {})}
    keys = list(homogeneous_keys(table) if keys is None else keys)
    unknown = [k for k in keys if k not in table.rows]
    if unknown:
        raise ConfigError(f"not in the table: {unknown[:3]}")
    space = table.space()
    by_key = {dna_key(d): d for d in all_dnas(space)}
    candidates = [lm_candidate(pg.materialize(space, by_key[k]), cfg["seq_len"]) for k in keys]
    corpus = TextCorpus(seq_len=cfg["seq_len"], max_bytes=cfg["max_bytes"])
    evaluator = LanguageModelEvaluator(corpus=corpus, steps=cfg["steps"],
                                       batch_size=cfg["batch_size"], lr=cfg["lr"],
                                       eval_examples=cfg["eval_examples"])
    if store is None:
        store = f"sqlite:///{os.path.join(tempfile.mkdtemp(prefix='memnas-lm-'), 'lm.db')}"
    experiment = memnas.Experiment(name="tabular-lm", space=pg.oneof(candidates),
                                   evaluator=evaluator, algorithm=pg.geno.Sweeping(),
                                   objectives={"bits_per_byte": "min"}, store=store, cache=False)
    start = time.perf_counter()
    experiment.run(max_trials=len(candidates), workers=workers, executor=executor,
                   progress=progress)
    wall = time.perf_counter() - start
    trials = memnas.load("tabular-lm", store=store).trials()
    failed = trials[trials["status"] != TrialStatus.COMPLETED]
    if len(failed) or len(trials) != len(keys):
        raise ConfigError(f"{len(failed)} LM trials failed, {len(trials)} of {len(keys)} ran: "
                          f"{list(failed.get('error', []))[:1]}")
    by_summary = {table.rows[k]["summary"]: k for k in keys}  # the summary names the row
    if len(by_summary) != len(keys):
        raise ConfigError("two chosen rows share a summary; pass keys with distinct summaries")
    for _, trial in trials.iterrows():
        key = by_summary[trial["summary"]]
        table.rows[key]["lm"] = {k: round(float(trial[k]), 5) for k in
                                 ("bits_per_byte", "loss", "tokens_per_s", "state_bytes")}
    table.metadata["lm"] = {
        **cfg, "corpus": "python stdlib (sysconfig)", "corpus_sha256": corpus.corpus_sha256,
        "python": corpus.python_version, "rows": len(keys), "wall_s": round(wall, 1),
        "workers": workers, "command": command,
        "training": {k: v for k, v in dataclasses.asdict(evaluator).items() if k != "corpus"},
    }
    save_table(table, out or path)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m memnas.tabular.lm_rows [--table FILE] [--workers W]``."""
    from memnas.tabular.v2 import TABLE_V2_PATH

    parser = argparse.ArgumentParser(prog="python -m memnas.tabular.lm_rows", description=__doc__)
    parser.add_argument("--table", default=TABLE_V2_PATH)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="ray", choices=("ray", "local"))
    parser.add_argument("--store", default=None)
    parser.add_argument("--steps", type=int, default=LM_SETTINGS["steps"])
    args = parser.parse_args(argv)
    command = "python -m memnas.tabular.lm_rows " + " ".join(
        argv if argv is not None else sys.argv[1:])
    table = add_lm_rows(args.table, settings={"steps": args.steps}, workers=args.workers,
                        executor=args.executor, store=args.store, progress=sys.stderr.isatty(),
                        command=command.strip())
    print(f"{table.metadata['lm']['rows']} LM rows in {table.metadata['lm']['wall_s']} s "
          f"-> {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
