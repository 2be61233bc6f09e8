"""The tabular MQAR memory benchmark: its space, its table and `TabularEvaluator`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import hashlib
import json
import math
import os
from typing import Any, Mapping

import pyglove as pg

from memnas.errors import ConfigError
from memnas.measurement import Context, Measurement

TABLE_PATH = os.path.join(os.path.dirname(__file__), "data", "mqar_memory.json.gz")
"""The shipped table (regenerate with ``python -m memnas.tabular.build_table``)."""

TABLE_SEEDS = (0, 1)
"""Training seeds every architecture of the table was evaluated with."""

TABLE_TASK = {"vocab_size": 64, "seq_len": 16, "num_kv_pairs": 4}
"""The MQAR task of the table (`memnas.evaluators.MQAR` fields)."""


def tabular_space() -> Any:
    """The benchmark's space: 312 memory architectures of 1-2 layers, no floats.

    Decisions: width 16 or 32; 1 or 2 blocks (MLP ratio 2, pre-norm), each block
    choosing one of twelve mixers: softmax attention (1 or 2 heads, full or a
    4-token sliding window), linear attention (1 or 2 heads, ``elu+1`` or
    ``softmax`` feature map) and a modern Hopfield layer (1 or 2 heads, ``beta``
    0.25 or learned). Two layers of full attention or Hopfield recall solve MQAR,
    the sliding window and linear attention's small state do not, one layer
    cannot, and width 16 learns slower: a varied landscape.
    """
    from memnas.searchspace import memory_space
    from memnas.searchspace.mixers import HopfieldLayer, LinearAttention, SoftmaxAttention

    return memory_space(
        vocab_size=TABLE_TASK["vocab_size"], max_len=TABLE_TASK["seq_len"], max_layers=2,
        d_model=(16, 32), mlp_ratio=(2,),
        mixers=[
            SoftmaxAttention(num_heads=pg.oneof([1, 2]), window=pg.oneof([None, 4])),
            LinearAttention(num_heads=pg.oneof([1, 2]),
                            feature_map=pg.oneof(["elu+1", "softmax"])),
            HopfieldLayer(num_heads=pg.oneof([1, 2]), beta=pg.oneof([0.25, "learned"])),
        ])


def space_hash(space: Any) -> str:
    """sha256 of a space's PyGlove JSON (ties a table to the space it was built on)."""
    return hashlib.sha256(json.dumps(pg.to_json(space), sort_keys=True).encode()).hexdigest()


def dna_key(dna: pg.DNA) -> str:
    """The table key of a DNA: its flattened decision numbers, e.g. ``"1,1,2,0,1"``."""
    return ",".join(str(n) for n in dna.to_numbers(flatten=True))


def all_dnas(space: Any) -> list[pg.DNA]:
    """Every DNA of a space without float decisions, in PyGlove's sweeping order.

    Raises:
      ConfigError: the space has a float decision or no decision at all.
    """
    spec = pg.dna_spec(space)
    if not spec.decision_points or any(isinstance(d, pg.geno.Float) for d in spec.decision_points):
        raise ConfigError(f"a table needs a finite space of choices without floats, got {space!r:.100}")
    sweep = pg.geno.Sweeping()
    sweep.setup(spec)
    out = []
    while True:
        try:
            out.append(sweep.propose())
        except StopIteration:
            return out


@dataclasses.dataclass
class Table:
    """A benchmark table: one row per architecture, keyed by `dna_key`.

    Attributes:
      rows: ``{key: {"summary": str, "params": float, "seeds": {"0": {"accuracy",
        "loss", "train_time_s"}, "1": {...}}}}``; a v2 row also has ``state_bytes``,
        ``flops_per_token`` and, per seed, ``"budgets": {"50": {"accuracy", "loss",
        "train_time_s"}, ...}`` (the learning curve of one run).
      metadata: how the table was made (space, task, training, budgets, memnas
        version, date, generation command and wall time).
    """

    rows: dict[str, dict[str, Any]]
    metadata: dict[str, Any]
    _template: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def space(self) -> Any:
        """The space the table was built on, rebuilt from its stored PyGlove JSON."""
        return pg.from_json(copy.deepcopy(self.metadata["space"]))

    def key_of(self, candidate: Any) -> str:
        """The key of a candidate of the table's space.

        Raises:
          ConfigError: one line naming the candidate when it is not in the space.
        """
        if self._template is None:
            self._template = pg.template(self.space())
        try:
            dna = self._template.encode(candidate)
        except Exception:
            dna = None
        if dna is None or dna_key(dna) not in self.rows:
            raise ConfigError(f"candidate is not in the benchmark table "
                              f"({len(self.rows)} architectures): {_describe(candidate)}")
        return dna_key(dna)

    @property
    def budgets(self) -> list[int]:
        """Training budgets (steps) each row has figures for; empty for a v1 table."""
        return [int(b) for b in self.metadata.get("budgets", [])]

    def accuracy(self, key: str, seed: int | None = None, budget: int | None = None) -> float:
        """Held-out accuracy of one row: of training seed ``seed``, or the mean over seeds;
        at ``budget`` steps of a v2 table (None: the full run)."""
        return self._value(key, "accuracy", seed, budget)

    def _value(self, key: str, name: str, seed: int | None, budget: int | None = None) -> float:
        seeds = self.rows[key]["seeds"]
        chosen = [seeds[str(seed)]] if seed is not None else list(seeds.values())
        if budget is not None:
            chosen = [s["budgets"][str(budget)] for s in chosen]
        return sum(float(s[name]) for s in chosen) / len(chosen)

    def accuracies(self) -> dict[str, float]:
        """``{key: accuracy averaged over seeds}`` for every row."""
        return {k: self.accuracy(k) for k in self.rows}

    def top_threshold(self, fraction: float = 0.01) -> float:
        """The mean accuracy an architecture needs to be in the table's top ``fraction``.

        The accuracy of the ``ceil(fraction * len)``-th best row (at least the best).

        Raises:
          ValueError: ``fraction`` not in (0, 1].
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        ranked = sorted(self.accuracies().values(), reverse=True)
        return ranked[max(1, math.ceil(fraction * len(ranked))) - 1]


def save_table(table: Table, path: str) -> None:
    """Writes a table as gzipped JSON (deterministic bytes apart from the metadata)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    data = json.dumps({"metadata": table.metadata, "rows": table.rows}, sort_keys=True, indent=0)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(data.encode())


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> Table:
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    return Table(rows=data["rows"], metadata=data["metadata"])


def load_table(path: str | None = None) -> Table:
    """Loads a table (the shipped one by default); cached per file and modification time.

    Raises:
      ConfigError: no file at ``path``.
    """
    path = os.path.abspath(path or TABLE_PATH)
    if not os.path.exists(path):
        raise ConfigError(f"no benchmark table at {path!r}; build one with "
                          "`python -m memnas.tabular.build_table --out FILE`")
    return _read(path, os.path.getmtime(path))


def top_threshold(fraction: float = 0.01, path: str | None = None) -> float:
    """The top-``fraction`` accuracy threshold of a table (the shipped one by default)."""
    return load_table(path).top_threshold(fraction)


@dataclasses.dataclass(frozen=True)
class TabularEvaluator:
    """Answers an evaluation from a table instantly, instead of training.

    A picklable memnas evaluator: ``evaluator(candidate, ctx) -> Measurement`` with
    metrics ``accuracy`` and ``loss`` and costs ``params`` (and ``state_bytes``,
    ``flops_per_token``, ``latency_ms`` where the table has them) and
    ``simulated_time`` (the recorded training time, in seconds). On a table with
    budgets (v2), ``ctx.budget["steps"]`` picks the point of the learning curve
    (default: the full run) and ``simulated_time`` is the training time of that
    budget, so multi-fidelity algorithms can be compared by compute spent.

    Multi-fidelity: with ``ctx.checkpoint`` the artifact is ``{"steps": b}``, the budget
    answered (the table's training steps when no budget is given). With ``ctx.resume``
    such an artifact (a lower rung of the same candidate), ``simulated_time`` stays the
    training time at ``b`` and the costs ``budget_spent = b - parent's b`` and
    ``simulated_time_spent = time(b) - time(parent's b)`` (both on the learning curve
    of the seed answered) say what continuing cost; from scratch they are ``b`` and
    ``simulated_time``. On a table with budgets it reports the learning curve through
    ``ctx.report(b, accuracy=..., loss=...)`` at each of the table's budgets above the
    resumed one up to the budget answered, so a scheduler (Ray Tune's ASHA) can stop
    a trial early. ``costs(candidate)`` gives the row's ``params``,
    ``state_bytes`` and ``flops_per_token`` (where present) before any lookup of results.

    Attributes:
      path: The table file; None: the shipped table.
      seed_mode: ``"mean"``: metrics averaged over the table's seeds (deterministic);
        ``"trial"``: the seed ``ctx.seed % number of seeds``, like a real run with
        seed noise.
    """

    path: str | None = None
    seed_mode: str = "mean"

    def __post_init__(self) -> None:
        if self.seed_mode not in ("mean", "trial"):
            raise ConfigError(f"seed_mode must be 'mean' or 'trial', got {self.seed_mode!r}")

    def table(self) -> Table:
        """The table this evaluator answers from."""
        return load_table(self.path)

    def lookup(self, key: str, seed: int | None = None, budget: int | None = None) -> Measurement:
        """The measurement of table row ``key`` (mean over seeds when ``seed`` is None),
        at ``budget`` steps when given (a table with budgets only).

        Raises:
          ConfigError: no row ``key``, or a budget the table does not have.
        """
        table = self.table()
        if key not in table.rows:
            raise ConfigError(f"architecture {key!r} is not in the benchmark table "
                              f"({len(table)} rows)")
        if budget is not None and int(budget) not in table.budgets:
            raise ConfigError(f"budget steps={budget!r} is not in the table; it has "
                              f"{table.budgets or 'no budgets (a v1 table)'}")
        budget = None if budget is None else int(budget)
        row = table.rows[key]
        costs = {"params": float(row["params"]),
                 "simulated_time": table._value(key, "train_time_s", seed, budget)}
        costs.update({c: float(row[c]) for c in ("state_bytes", "flops_per_token", "latency_ms")
                      if c in row})
        return Measurement(
            metrics={"accuracy": table._value(key, "accuracy", seed, budget),
                     "loss": table._value(key, "loss", seed, budget)},
            costs=costs)

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Looks ``candidate`` up in the table.

        Raises:
          ConfigError: one line naming the candidate when it is not in the table, or a
            ``ctx.resume`` that is not a lower budget of the table's.
        """
        ctx = ctx if ctx is not None else Context()
        table = self.table()
        key = table.key_of(candidate)
        seed = None
        if self.seed_mode == "trial":
            seeds = sorted(int(s) for s in table.rows[key]["seeds"])
            seed = seeds[int(ctx.seed) % len(seeds)]
        budget = ctx.budget.get("steps") if table.budgets else None
        m = self.lookup(key, seed, budget)
        steps = budget if budget is not None else table.metadata.get("training", {}).get("steps")
        parent = _parent_steps(ctx.resume, table, steps)
        spent = m.costs["simulated_time"]
        if parent:
            spent -= table._value(key, "train_time_s", seed, parent)
        m.costs["simulated_time_spent"] = spent
        if steps is not None:
            m.costs["budget_spent"] = float(int(steps) - (parent or 0))
            m.artifact = {"steps": int(steps)} if ctx.checkpoint else None
        if budget is not None:  # the learning curve, so that a scheduler (Tune's ASHA) can stop it
            for b in table.budgets:
                if (parent or 0) < b <= int(budget):
                    ctx.report(b, accuracy=table._value(key, "accuracy", seed, b),
                               loss=table._value(key, "loss", seed, b))
        return m

    def costs(self, candidate: Any) -> dict[str, float]:
        """The costs a lookup stores that are known before it: the row's ``params``,
        ``state_bytes`` and ``flops_per_token`` (where the table has them).

        Raises:
          ConfigError: one line naming the candidate when it is not in the table.
        """
        table = self.table()
        row = table.rows[table.key_of(candidate)]
        return {c: float(row[c]) for c in ("params", "state_bytes", "flops_per_token") if c in row}


def _parent_steps(resume: Any, table: Table, steps: Any) -> int | None:
    """The budget of the rung ``resume`` (``{"steps": b}``) continues, checked; None: none."""
    if resume is None:
        return None
    parent = resume.get("steps") if isinstance(resume, Mapping) else None
    if not table.budgets or isinstance(parent, bool) or not isinstance(parent, int) \
            or parent not in table.budgets or steps is None or parent > int(steps):
        raise ConfigError(f"ctx.resume must be {{'steps': b}} with b one of the table's budgets "
                          f"{table.budgets or '(none: a v1 table)'} up to steps={steps!r}, "
                          f"got {resume!r:.100}")
    return parent


def _describe(candidate: Any) -> str:
    fn = getattr(candidate, "summary", None)
    try:
        text = str(fn()) if callable(fn) else repr(candidate)
    except Exception:
        text = repr(candidate)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."
