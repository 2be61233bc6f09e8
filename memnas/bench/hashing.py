"""`memnas bench hashing`: evaluations the equivalence cache saves, what hashing costs, false merges."""

from __future__ import annotations

import os
import random
import tempfile
import time
from typing import Any


def run(quick: bool = False, trials: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Regularized evolution over the memory space with and without the cache, same seed.

    Prints and returns: ``trials``, ``saved_fraction`` (cached trials / trials),
    ``wall_s_cache`` / ``wall_s_nocache``, ``hash_time_fraction`` (time spent hashing /
    time spent evaluating, in the cached run), ``checked`` and ``false_merges`` (hits
    re-evaluated with their source's seed whose metrics differ).
    """
    import pyglove as pg

    import memnas
    from memnas.evaluators import MQAR, TrainEvaluator
    from memnas.measurement import Context
    from memnas.searchspace import memory_space
    from memnas.store import Store

    trials = trials or (40 if quick else 200)
    # Sized so 2 x 200 trials take a few minutes on 2 CPU cores.
    space = memory_space(vocab_size=64, max_len=16, max_layers=2, d_model=(16, 32))
    evaluator = TrainEvaluator(task=MQAR(vocab_size=64, seq_len=16, num_kv_pairs=4),
                               steps=60 if quick else 120, eval_examples=256)
    folder = tempfile.mkdtemp(prefix="memnas-bench-hashing-")
    out: dict[str, Any] = {"trials": trials}
    for arm, cache in (("cache", True), ("nocache", False)):
        url = f"sqlite:///{os.path.join(folder, arm + '.db')}"  # separate stores: no sharing
        exp = memnas.Experiment(name=arm, space=space, evaluator=evaluator, algorithm="evolution",
                                objectives={"accuracy": "max", "params": "min"}, store=url,
                                seed=seed, cache=cache,
                                algorithm_options={"population_size": 20, "tournament_size": 5})
        start = time.perf_counter()
        result = exp.run(max_trials=trials, workers=2, executor="ray")
        out[f"wall_s_{arm}"] = time.perf_counter() - start
        df = result.trials()
        out[f"best_accuracy_{arm}"] = float(df["accuracy"].max())
        if cache:
            counters = result.cache_counters()
            stats = Store(url).experiment(arm)["config"].get("hashing", {})
            evaluated = df[df["status"] == "completed"]["wall_time"].sum()
            out.update(saved_fraction=(counters["hits"] + counters["attached"]) / len(df),
                       hits=counters["hits"], attached=counters["attached"],
                       evaluations=counters["misses"], saved_s=counters["saved_s"],
                       hash_time_s=stats.get("hash_time_s", 0.0),
                       hashed=stats.get("hashed", 0),
                       evaluation_time_s=float(evaluated))
            out["hash_time_fraction"] = out["hash_time_s"] / max(out["evaluation_time_s"], 1e-9)
            df = df.set_index("id", drop=False)
            cached_df, by_id = df[df["status"] == "cached"], df
            sample = random.Random(seed).sample(list(cached_df.index),
                                                min(len(cached_df), 5 if quick else 12))
            checked = false_merges = 0
            store = Store(url)
            rows = {t["id"]: t for t in store.trials(store.experiment(arm)["id"])}
            for i in sample:
                row = cached_df.loc[i]
                source = by_id.loc[int(row["cached_from"])]
                cand = pg.from_json_str(rows[i]["candidate"])
                again = evaluator(cand, Context(seed=int(source["seed"])))
                checked += 1
                if abs(again.metrics["accuracy"] - source["accuracy"]) > 1e-6:
                    false_merges += 1
            out.update(checked=checked, false_merges=false_merges)
    out["speedup"] = out["wall_s_nocache"] / out["wall_s_cache"]
    print(f"memnas bench hashing: regularized evolution, {trials} trials, memory space, MQAR "
          f"({evaluator.steps} steps), 2 Ray workers, seed {seed}")
    print(f"  saved: {out['saved_fraction']:.1%} of trials answered by the cache "
          f"({out['hits']} hits, {out['attached']} attached; {out['evaluations']} evaluations)")
    print(f"  wall time: {out['wall_s_cache']:.1f} s with the cache, "
          f"{out['wall_s_nocache']:.1f} s without ({out['speedup']:.2f}x)")
    print(f"  hashing: {out['hash_time_s']:.2f} s for {out['hashed']} functional hashes = "
          f"{out['hash_time_fraction']:.2%} of {out['evaluation_time_s']:.1f} s of evaluation")
    print(f"  false merges: {out['false_merges']} of {out['checked']} hits re-evaluated with "
          "their source's seed")
    print(f"  best accuracy: {out['best_accuracy_cache']:.3f} with, "
          f"{out['best_accuracy_nocache']:.3f} without")
    return out
