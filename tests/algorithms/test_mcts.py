"""MCTS: UCT order, virtual loss, learning a toy reward, float bins, replay, rank normalisation."""

import math
import statistics

import pyglove as pg
import pytest

from memnas.algorithms import MCTS, make_algorithm
from memnas.errors import ConfigError

TOY = pg.Dict(a=pg.oneof([0, 1, 2, 3]), b=pg.oneof(["x", pg.Dict(y=pg.floatv(0.0, 1.0)), "z"]),
              c=pg.floatv(0.0, 1.0))


def _toy_reward(dna):
    v = pg.materialize(TOY, dna)
    b = 0.3 * (1 - abs(v["b"]["y"] - 0.7)) if isinstance(v["b"], dict) else 0.0
    return (1.0 if v["a"] == 2 else 0.2 * v["a"]) + b - 0.2 * abs(v["c"] - 0.5)


def _mcts(space, seed=0, **kw):
    algo = make_algorithm("mcts", seed=seed, **kw)
    algo.setup(pg.dna_spec(space))
    return algo


def _dump(node, key="root"):
    """The tree as nested tuples: key, visits, in flight, rewards (sorted), children."""
    return (key, len(node.rewards), node.in_flight, sorted(node.rewards),
            [_dump(c, k) for k, c in sorted(node.children.items())])


def test_registered_with_options():
    algo = make_algorithm("mcts", seed=3, exploration=0.2, bins=4)
    assert isinstance(algo, MCTS) and algo.exploration == 0.2 and algo.bins == 4
    assert not algo.multi_objective


def test_unvisited_children_come_first():
    algo = _mcts(pg.Dict(a=pg.oneof(list(range(5))), b=pg.oneof([0, 1, 2])), seed=1)
    firsts = []
    for i in range(5 + 5 * 3):
        dna = algo.propose()
        firsts.append(dna.to_numbers()[0])
        algo.feedback(dna, float(i % 4))
    assert sorted(firsts[:5]) == [0, 1, 2, 3, 4]  # every root child before any repeat
    for a, stats in ((a, algo.children_stats([a])) for a in range(5)):
        assert sum(s["visits"] for s in stats.values()) == \
            algo.children_stats()[a]["visits"] - 1  # the expanding visit stops at depth 1


def test_virtual_loss_spreads_concurrent_proposals():
    algo = _mcts(pg.Dict(a=pg.oneof(list(range(4))), b=pg.oneof([0, 1])), seed=2)
    for _ in range(8):  # the whole tree is visited once, rewards favour a=0
        dna = algo.propose()
        algo.feedback(dna, 1.0 if dna.to_numbers()[0] == 0 else 0.0)
    batch = [algo.propose() for _ in range(4)]
    stats = algo.children_stats()
    assert sum(s["in_flight"] for s in stats.values()) == 4
    # without virtual loss all four would go to the best child a=0
    assert len({d.to_numbers()[0] for d in batch}) > 1
    for dna in batch:
        algo.feedback(dna, 0.5)
    stats = algo.children_stats()
    assert all(s["in_flight"] == 0 for s in stats.values())
    assert sum(s["visits"] for s in stats.values()) == 12


def test_prefers_the_best_branch():
    picks = []
    for seed in range(3):
        algo = _mcts(TOY, seed=seed)
        for _ in range(80):
            dna = algo.propose()
            algo.feedback(dna, _toy_reward(dna))
        stats = algo.children_stats()
        assert max(stats, key=lambda k: stats[k]["visits"]) == 2
        assert stats[2]["mean"] > max(s["mean"] for k, s in stats.items() if k != 2)
        late = [algo.propose() for _ in range(20)]
        picks.append(sum(d.to_numbers()[0] == 2 for d in late) / 20)
    assert statistics.mean(picks) > 0.5  # random search: 0.25


def test_mcts_beats_random_on_toy_reward():
    def late_mean(name, seed):
        algo = make_algorithm(name, seed=seed)
        algo.setup(pg.dna_spec(TOY))
        rewards = []
        for _ in range(80):
            dna = algo.propose()
            rewards.append(_toy_reward(dna))
            algo.feedback(dna, rewards[-1])
        return statistics.mean(rewards[-30:])

    mcts = statistics.mean(late_mean("mcts", s) for s in range(3))
    rnd = statistics.mean(late_mean("random", s) for s in range(3))
    assert mcts > rnd + 0.1


def test_float_bins_sample_inside_the_chosen_bin():
    space = pg.Dict(x=pg.floatv(0.0, 1.0), l=pg.floatv(1e-4, 1.0, scale="log"))
    algo = _mcts(space, seed=0, bins=4)
    xs = []
    for _ in range(60):
        dna = algo.propose()
        v = pg.materialize(space, dna)
        assert 0.0 <= v["x"] <= 1.0 and 1e-4 <= v["l"] <= 1.0
        xs.append(v["x"])
        algo.feedback(dna, -abs(v["x"] - 0.9))
    stats = algo.children_stats()
    assert sorted(stats) == [0, 1, 2, 3]
    assert max(stats, key=lambda k: stats[k]["visits"]) == 3  # the bin [0.75, 1]
    assert sum(x >= 0.75 for x in xs[-20:]) > 10


def test_log_float_bins_are_equal_in_log_space():
    space = pg.Dict(l=pg.floatv(1e-4, 1.0, scale="log"))
    algo = _mcts(space, seed=1, bins=4)  # one bin per decade
    for _ in range(4):  # unvisited bins first: one value in each decade
        dna = algo.propose()
        v = pg.materialize(space, dna)["l"]
        assert 1e-4 <= v <= 1.0
        algo.feedback(dna, v)
        decade = min(int(math.log10(v) + 4), 3)
        assert algo.children_stats()[decade]["visits"] == 1
    assert sorted(algo.children_stats()) == [0, 1, 2, 3]


def test_degenerate_float_is_one_bin():
    algo = _mcts(pg.Dict(x=pg.floatv(0.5, 0.5), a=pg.oneof([1, 2])), seed=0)
    dna = algo.propose()
    assert dna.to_numbers()[0] == 0.5 and list(algo.children_stats()) == [0]


def test_replay_rebuilds_the_same_tree():
    algo = _mcts(TOY, seed=4)
    history, in_flight = [], []
    for i in range(30):
        in_flight.append(algo.propose())
        history.append(in_flight[-1])
        if i % 3 == 2:  # three at a time, fed back out of order
            for dna in (in_flight[1], in_flight[2], in_flight[0]):
                algo.feedback(dna, _toy_reward(dna))
            in_flight = []
    last = [algo.propose() for _ in range(2)]  # still running at the "crash"
    fresh = _mcts(TOY, seed=4)
    fresh.recover([(d, _toy_reward(d)) for d in history] + [(d, None) for d in last])
    assert _dump(fresh._root) == _dump(algo._root)
    for dna in last:  # their feedback lifts the virtual loss in the recovered tree
        algo.feedback(dna, 0.1)
        fresh.feedback(dna, 0.1)
    assert _dump(fresh._root) == _dump(algo._root)
    assert all(s["in_flight"] == 0 for s in fresh.children_stats().values())


def test_rewards_are_normalised_by_rank():
    def run(scale, shift):
        algo = _mcts(TOY, seed=5)
        seq = []
        for _ in range(40):
            dna = algo.propose()
            seq.append(dna.to_numbers())
            algo.feedback(dna, scale * _toy_reward(dna) + shift)
        return seq

    assert run(1.0, 0.0) == run(1000.0, -37.0)  # same ranks, same search


def test_nan_reward_counts_as_worst():
    algo = _mcts(pg.Dict(a=pg.oneof([0, 1])), seed=0)
    a, b = algo.propose(), algo.propose()
    algo.feedback(a, math.nan)
    algo.feedback(b, -5.0)
    stats = algo.children_stats()
    assert stats[a.to_numbers()[0]]["mean"] == 0.0 and stats[b.to_numbers()[0]]["mean"] == 1.0


def test_feedback_for_a_dna_it_did_not_propose():
    algo = _mcts(TOY, seed=0)
    dna = pg.DNA.from_numbers([2, 1, 0.5, 0.25], pg.dna_spec(TOY))
    algo.feedback(dna, 1.0)
    assert algo.children_stats() == {2: {"visits": 1, "in_flight": 0, "mean": 0.5}}


def test_custom_decision_point_is_a_config_error():
    class Opaque(pg.hyper.CustomHyper):
        def custom_decode(self, dna):
            return dna.value

        def random_dna(self, random_generator=None, previous_dna=None):
            return pg.DNA("v")

    algo = make_algorithm("mcts", seed=0)
    with pytest.raises(ConfigError, match=r"MCTS handles oneof/manyof/floatv .*CustomDecisionPoint "
                                          r"at 'w'"):
        algo.setup(pg.dna_spec(pg.Dict(w=Opaque(), b=pg.oneof([1, 2]))))


def test_no_repeats_until_the_space_is_exhausted():
    import pyglove as pg

    from memnas.algorithms.mcts import MCTS

    space = pg.Dict(a=pg.oneof([0, 1, 2]), b=pg.oneof([0, 1, 2]), c=pg.oneof([0, 1]))
    algo = MCTS(seed=0, exploration=0.0)   # pure exploitation: repeats are likeliest
    algo.setup(pg.dna_spec(space))
    seen = []
    for _ in range(18):
        dna = algo.propose()
        v = pg.materialize(space, dna)
        algo.feedback(dna, float(v["a"] == 2))   # one branch is best, and small
        seen.append(tuple(dna.to_numbers()))
    assert len(set(seen)) == 18                   # all 18 points, none twice
    dna = algo.propose()                          # exhausted: a repeat is allowed now
    assert tuple(dna.to_numbers()) in set(seen)
