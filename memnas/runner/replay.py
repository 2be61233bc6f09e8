"""Rebuilding an algorithm from the store by replaying its calls in their original order.

A trial's number is the order it was proposed in, and the store's feedback rows give
the position of every feedback among the calls (see `memnas.store.Store.feedback_order`).
Replaying the proposals (checking that each gives the stored DNA again) and the
feedbacks in that order leaves a seeded algorithm, random streams included, exactly
where the stopped run left it: it goes on as an uninterrupted run would, and trials
that were running when the run stopped have been proposed (they are rerun as
themselves) and are never proposed again.

Warm starts come first: the results of earlier experiments on the same space
(`warm_history`, the same trials at every resume) are fed to the algorithm before the
replay (`warm_start`).

PyGlove's ``recover(history)`` is the fallback where the calls cannot be replayed: an
algorithm that proposes something else on replay (unseeded, or not deterministic),
or a store written before feedback was recorded.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pyglove as pg

from memnas.algorithms.base import AlgorithmHooks
from memnas.errors import ConfigError
from memnas.records import FED_BACK, WITH_RESULT, values_of
from memnas.runner._records import dna_from_json

__all__ = ["recover", "replay_calls", "warm_history", "warm_start"]


def replay_calls(algorithm: pg.geno.DNAGenerator, hooks: AlgorithmHooks,
                 trials: Sequence[Mapping[str, Any]], order: Mapping[int, int],
                 reward: Callable[[Mapping[str, Any]], Any],
                 output_artifact: Callable[[Mapping[str, Any]], Any],
                 proposed: dict[int, pg.DNA] | None = None) -> int | None:
    """Replays the stored calls to a freshly set-up ``algorithm``.

    Args:
      algorithm: the experiment's algorithm, set up and never called yet.
      hooks: its `AlgorithmHooks` (``artifact_for`` follows each proposal,
        ``feedback_artifact`` precedes each feedback, as in the run).
      trials: the experiment's stored trials, ordered by number.
      order: ``{trial id: seq}``, the position of each trial's feedback among all calls.
      reward: a stored trial's reward as the algorithm was given it.
      output_artifact: a stored trial's output artifact (or its cache source's).
      proposed: filled with ``{trial id: the DNA object proposed for it}``.

    Returns:
      The number of calls replayed; None when they cannot be (the algorithm is then
      half-replayed: build a fresh one).
    """
    fed = {seq: t for t in trials if (seq := order.get(t["id"])) is not None}
    if len(fed) != len(order) or any((t["status"] in FED_BACK) != (t["id"] in order)
                                     for t in trials):
        return None  # a result without a recorded feedback (an older store), or the reverse
    proposals = iter(trials)
    dnas: dict[int, pg.DNA] = {}
    calls = len(trials) + len(fed)
    for position in range(calls):
        t = fed.get(position)
        if t is not None:
            dna = dnas.get(t["id"])
            if dna is None:  # fed back before it was proposed: the order is not a run's
                return None
            hooks.feedback_artifact(dna, output_artifact(t))
            algorithm.feedback(dna, reward(t))
            continue
        t = next(proposals, None)
        if t is None:
            return None
        try:
            dna = algorithm.propose()
        except StopIteration:
            return None
        if pg.to_json(dna) != t["dna"]:
            return None
        hooks.artifact_for(dna)
        dnas[t["id"]] = dna
    if proposed is not None:
        proposed.update(dnas)
    return calls


def recover(algorithm: pg.geno.DNAGenerator, hooks: AlgorithmHooks,
            trials: Sequence[Mapping[str, Any]], spec: pg.DNASpec,
            reward: Callable[[Mapping[str, Any]], Any],
            output_artifact: Callable[[Mapping[str, Any]], Any],
            proposed: dict[int, pg.DNA] | None = None) -> int:
    """The fallback: PyGlove's ``recover(history)`` on a fresh ``algorithm``, each trial
    with its reward (None for those without a result), output artifacts handed first.

    Returns:
      The number of calls the stored trials stand for (proposals and feedbacks).
    """
    history = []
    for t in trials:
        dna = dna_from_json(t["dna"], spec)
        if proposed is not None:
            proposed[t["id"]] = dna
        value = None
        if t["status"] in FED_BACK:
            hooks.feedback_artifact(dna, output_artifact(t))
            value = reward(t)
        history.append((dna, value))
    if history:
        algorithm.recover(history)
    return len(trials) + sum(t["status"] in FED_BACK for t in trials)


def warm_history(store: Any, exp: Any, exp_id: int, spec: pg.DNASpec,
                 reward: Callable[[Mapping[str, Any]], Any]) -> list[tuple[pg.DNA, Any]]:
    """The warm-start trials of ``exp`` as ``(dna, reward)``.

    At the first run they are the finished trials with every objective of its
    ``warm_start`` experiments, and their ids are recorded in the experiment's config;
    every later run feeds exactly those (an earlier experiment continued meanwhile
    changes nothing), so the replay after them is exact.

    Raises:
      ConfigError: a warm-start experiment is no longer in the store.
    """
    if not exp.warm_start:
        return []
    config = dict(store.experiment(exp.name)["config"] or {})
    ids = config.get("warm_start_trials")
    rows: list[dict[str, Any]] = []
    for name in exp.warm_start:
        row = store.experiment(name)
        if row is None:
            raise ConfigError(f"warm_start experiment {name!r} is not in {store.shown_url!r}")
        rows.extend(store.trials(row["id"], [s.value for s in WITH_RESULT]))
    if ids is None:
        rows = [t for t in rows if all(k in values_of(t) for k in exp.objectives)]
        config["warm_start_trials"] = [t["id"] for t in rows]
        store.update_experiment(exp_id, config=config)
    else:
        by_id = {t["id"]: t for t in rows}
        rows = [by_id[i] for i in ids if i in by_id]
    return [(dna_from_json(t["dna"], spec), reward(t)) for t in rows]


def warm_start(algorithm: pg.geno.DNAGenerator, history: Sequence[tuple[pg.DNA, Any]]) -> None:
    """Feeds warm-start results to ``algorithm`` before its first proposal: its
    `AlgorithmHooks.warm_start`, else PyGlove's ``recover`` (which PyGlove allows for
    "trials from a previous study").

    They go worst first (`_worst_first`): an aging population (regularized evolution)
    keeps the last ones it is told, which are then the best of the earlier experiments
    rather than whichever came last; algorithms that keep everything do not mind."""
    if not history:
        return
    history = _worst_first(history)
    if isinstance(algorithm, pg.evolution.Evolution):
        # PyGlove's evolution recovers from its own DNA metadata: earlier experiments'
        # trials join as an initial population of generation 0.
        from pyglove.ext.evolution import base as _evo

        for dna, _ in history:
            dna.set_metadata(_evo.DNA_METADATA_INITIAL_POPULATION, True)
            dna.set_metadata(_evo.DNA_METADATA_GENERATION_ID, 0)
    if isinstance(algorithm, AlgorithmHooks):
        algorithm.warm_start(list(history))
    else:
        algorithm.recover(list(history))


def _worst_first(history: Sequence[tuple[pg.DNA, Any]]) -> list[tuple[pg.DNA, Any]]:
    """``history`` ordered by reward, best last (stable); tuple rewards by how many others
    dominate them, most first."""
    items = list(history)
    if all(not isinstance(r, (tuple, list)) for _, r in items):
        return sorted(items, key=lambda it: float(it[1]))
    vecs = [tuple(r) if isinstance(r, (tuple, list)) else (r,) for _, r in items]

    def dominated_by(v: tuple) -> int:
        return sum(all(a >= b for a, b in zip(w, v)) and w != v for w in vecs)

    return [items[i] for i in sorted(range(len(items)), key=lambda i: -dominated_by(vecs[i]))]
