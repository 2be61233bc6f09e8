"""A store filled with synthetic trials of the memory space, fast (bulk SQL inserts)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
from typing import Any

MIXERS = ("attention", "linear", "deltanet", "hopfield", "titans", "miras")
_QUALITY = {"attention": 0.95, "deltanet": 0.7, "titans": 0.65, "miras": 0.6, "hopfield": 0.5,
            "linear": 0.3}
_COST = {"attention": 1.0, "linear": 0.7, "deltanet": 0.9, "hopfield": 1.2, "titans": 1.6,
         "miras": 1.4}
_TRACEBACK = ("Traceback (most recent call last):\n  File \"memnas/evaluators/train.py\", "
              "line 88, in __call__\n    loss.backward()\n"
              "RuntimeError: loss is not finite (nan) at step {step}")


def _trial(rng: random.Random, number: int, start: _dt.datetime,
           done: list[dict[str, Any]]) -> dict[str, Any]:
    d_model = rng.choice((16, 32, 64))
    layers = [(rng.choice(MIXERS), rng.choice((1, 2, 4)), rng.choice((1, 2, 4)))
              for _ in range(rng.randint(1, 3))]
    decisions: dict[str, Any] = {"d_model": d_model, "layers": len(layers)}
    blocks = []
    for i, (mixer, heads, ratio) in enumerate(layers):
        decisions[f"layers[{i}].mixer"] = mixer
        decisions[f"layers[{i}].mixer.num_heads"] = heads
        decisions[f"layers[{i}].mlp_ratio"] = ratio
        blocks.append({"_type": "memnas.searchspace.model.Block",
                       "mixer": {"_type": f"memnas.searchspace.mixers.{mixer}.Mixer",
                                 "num_heads": heads},
                       "mlp_ratio": ratio, "channel_mixer": "mlp", "norm": "pre"})
    params = sum(d_model * d_model * (4 * _COST[m] + 2 * r) for m, _, r in layers) \
        + 64 * d_model * 2
    quality = max(_QUALITY[m] for m, _, _ in layers) * (0.6 + 0.4 * math.log2(d_model) / 6)
    accuracy = min(1.0, max(0.0, quality + rng.gauss(0, 0.06)))
    summary = f"d={d_model} | " + " > ".join(f"{m}(h={h})" for m, h, _ in layers) + \
        " | mlp " + ",".join(f"x{r}" for _, _, r in layers)
    wall = rng.uniform(0.5, 4.0)
    started = start + _dt.timedelta(seconds=number * 1.3)
    row = {"number": number, "status": "completed", "dna": [d_model, len(layers)],
           "decisions": decisions, "summary": summary,
           "candidate": json.dumps({"_type": "memnas.searchspace.model.SequenceModel",
                                    "vocab_size": 64, "d_model": d_model, "layers": blocks,
                                    "positions": "learned", "max_len": 16}),
           "sym_hash": f"{number:064x}", "fn_hash": None, "cached_from": None,
           "cache_kind": None, "saved_time": None, "seed": number, "error": None,
           "metrics": {"accuracy": accuracy, "loss": 2.5 * (1 - accuracy) + 0.1},
           "costs": {"params": float(params), "latency_ms": params / 5e4 + rng.uniform(0, .2)},
           "attempt": 1, "node": "127.0.0.1", "wall_time": wall, "created_at": started,
           "started_at": started, "finished_at": started + _dt.timedelta(seconds=wall)}
    roll = rng.random()
    if roll < 0.03:
        row.update(status="failed", metrics={}, costs={},
                   error=_TRACEBACK.format(step=rng.randint(1, 500)))
    elif roll < 0.13 and done:
        # An architecture met again: the equivalence cache reused its twin's result.
        twin = done[rng.randrange(len(done))]
        row.update({k: twin[k] for k in ("dna", "decisions", "summary", "candidate",
                                          "sym_hash", "metrics", "costs")})
        row.update(status="cached", cached_from_number=twin["number"], cache_kind="hit",
                   saved_time=twin["wall_time"], wall_time=0.0)
    else:
        done.append(row)
    return row


def fill(url: str, trials: int, name: str = "synthetic", seed: int = 0,
         algorithm: str = "evolution", curves: int = 50) -> int:
    """Creates experiment ``name`` in the store at ``url`` with ``trials`` synthetic trials.

    Trials look like a search of the memory space on MQAR: decisions, summaries,
    candidate JSON, accuracy/loss metrics, params/latency costs; about 3% failed with a
    traceback and 10% cached twins of an earlier completed trial (same architecture and
    values, ``cached_from`` its id). The first ``curves`` trials get training curves.

    Returns:
      The experiment's id.
    """
    from memnas.store import Store
    from memnas.store.bulk import insert_trials

    store = Store(url)
    exp_id = store.create_experiment(
        name, space={"_type": "synthetic"}, space_hash="0" * 64,
        algorithm={"name": algorithm, "options": {}}, evaluator={"name": "synthetic"},
        objectives={"accuracy": "max", "params": "min"}, config={"seed": seed})
    rng = random.Random(seed)
    start = _dt.datetime(2026, 11, 1)
    done: list[dict[str, Any]] = []
    rows = [_trial(rng, i, start, done) for i in range(trials)]
    curve = {n: [{"step": s, "name": "loss",
                  "value": 3.0 / (s + 1) + rows[n]["metrics"].get("loss", 1.0)}
                 for s in range(0, 100, 10)] for n in range(min(curves, trials))}
    insert_trials(store, exp_id, rows, curve)
    store.update_experiment(exp_id, status="completed")
    store.close()
    return exp_id
