"""OptunaSampler: the space-to-Optuna mapping, in-flight trials, recover, TPE, NSGA-II."""

import math
import statistics

import optuna
import pyglove as pg
import pytest

from memnas.algorithms import OptunaSampler, make_algorithm
from memnas.errors import ConfigError

SPACE = pg.Dict(
    a=pg.oneof([1, pg.Dict(x=pg.oneof([5, 6]), y=pg.floatv(0.0, 1.0)), 3]),
    m=pg.manyof(2, ["p", pg.Dict(q=pg.oneof([7, 8])), "r"], distinct=True, sorted=False),
    n=pg.manyof(3, ["u", "v"], distinct=False, sorted=True),
    lr=pg.floatv(1e-4, 1e-1, scale="log"),
)


def _sampler(name="tpe", space=SPACE, seed=0, **kw):
    algo = make_algorithm(name, seed=seed, **kw)
    algo.setup(pg.dna_spec(space))
    return algo


def test_params_are_decision_ids_and_branches_are_asked_only_when_chosen():
    algo = _sampler()
    for _ in range(15):
        dna = algo.propose()
        algo.feedback(dna, 0.0)
    for t in algo.study.trials:
        keys = set(t.params)
        assert {"a", "m[0]", "m[1]", "n[0]", "n[1]", "n[2]", "lr"} <= keys
        assert ({"a[=1/3].x", "a[=1/3].y"} <= keys) == (t.params["a"] == 1)
        assert not (keys & {"a[=1/3].x", "a[=1/3].y"}) or t.params["a"] == 1
        q = {k for k in keys if k.endswith("[=1/3].q")}
        assert len(q) == 0 or q <= {"m[0][=1/3].q", "m[1][=1/3].q"}
    branch = [t for t in algo.study.trials if t.params["a"] == 1]
    assert branch and len(branch) < 15  # both sides of the condition were seen


def test_distributions_are_fixed_per_parameter():
    algo = _sampler()
    for _ in range(12):
        algo.feedback(algo.propose(), 0.0)
    dists = {}
    for t in algo.study.trials:
        for k, d in t.distributions.items():
            assert dists.setdefault(k, d) == d
    # distinct manyof: index into what remains; non-distinct: all candidates each time
    assert dists["m[0]"].choices == (0, 1, 2) and dists["m[1]"].choices == (0, 1)
    assert all(dists[f"n[{i}]"].choices == (0, 1) for i in range(3))
    assert dists["lr"].log and dists["lr"].low == 1e-4 and dists["a[=1/3].y"].log is False


def test_dna_follows_the_answers():
    algo = _sampler()
    for _ in range(20):
        dna = algo.propose()
        v = pg.materialize(SPACE, dna)
        t = algo.study.trials[-1]
        p = t.params
        assert v["lr"] == p["lr"]
        if p["a"] == 1:
            assert v["a"] == {"x": [5, 6][p["a[=1/3].x"]], "y": p["a[=1/3].y"]}
        first = p["m[0]"]
        second = [c for c in range(3) if c != first][p["m[1]"]]
        assert [first, second] == [1 if isinstance(m, dict) else "p?r".index(m) for m in v["m"]]
        for i, m in enumerate(v["m"]):
            if isinstance(m, dict):
                assert m["q"] == [7, 8][p[f"m[{i}][=1/3].q"]]
        assert v["n"] == sorted(v["n"]) and len(v["n"]) == 3
        n_sorted = sorted(p[f"n[{i}]"] for i in range(3))  # the DNA keeps n's picks sorted
        assert algo.params_of(dna)[0] == {**p, **{f"n[{i}]": x for i, x in enumerate(n_sorted)}}
        algo.feedback(dna, 0.0)


def test_sorted_distinct_manyof_and_permutation():
    space = pg.Dict(s=pg.manyof(3, list(range(5)), distinct=True, sorted=True),
                    p=pg.permutate(["a", "b", "c"]))
    algo = _sampler(space=space)
    for _ in range(20):
        v = pg.materialize(space, algo.propose())
        assert v["s"] == sorted(set(v["s"])) and len(v["s"]) == 3
        assert sorted(v["p"]) == ["a", "b", "c"]


def test_in_flight_trials_get_their_own_values():
    algo = _sampler()
    batch = [algo.propose() for _ in range(4)]
    assert [t.state for t in algo.study.trials] == [optuna.trial.TrialState.RUNNING] * 4
    for i in (2, 0, 3, 1):
        algo.feedback(batch[i], float(i))
    for i, t in enumerate(algo.study.trials):
        assert t.state == optuna.trial.TrialState.COMPLETE and t.value == float(i)


def test_recover_adds_finished_trials_and_late_feedback():
    algo = _sampler()
    history = []
    for i in range(10):
        dna = algo.propose()
        algo.feedback(dna, float(i))
        history.append((dna, float(i)))
    fresh = _sampler()
    fresh.recover(history[:8] + [(history[8][0], None), (history[9][0], None)])
    assert [t.value for t in fresh.study.trials] == [float(i) for i in range(8)]
    for original, added in zip(algo.study.trials, fresh.study.trials):
        # the same parameters, up to the order of the picks of the sorted manyof n
        drop = lambda d: {k: v for k, v in d.items() if not k.startswith("n[")}  # noqa: E731
        assert drop(original.params) == drop(added.params)
        picks = lambda d: sorted(d[f"n[{i}]"] for i in range(3))  # noqa: E731
        assert picks(original.params) == picks(added.params)
    fresh.feedback(history[9][0], 9.0)  # results of the requeued trials arrive
    assert fresh.study.trials[-1].value == 9.0 and len(fresh.study.trials) == 9
    dna = fresh.propose()
    pg.materialize(SPACE, dna)
    fresh.feedback(dna, 1.0)


def test_nan_reward_is_a_failed_trial():
    algo = _sampler()
    dna = algo.propose()
    algo.feedback(dna, math.nan)
    fresh = _sampler()
    fresh.recover([(dna, math.nan)])
    assert algo.study.trials[0].state == fresh.study.trials[0].state == \
        optuna.trial.TrialState.FAIL


def _toy(v):
    a = v["a"]
    score = 1.0 if isinstance(a, dict) and a["x"] == 6 else 0.0
    if isinstance(a, dict):
        score += 0.5 * (1 - abs(a["y"] - 0.8))
    return score - abs(math.log10(v["lr"]) + 2.5) / 3


def _best_so_far(name, seed, n=60):
    algo = make_algorithm(name, seed=seed)
    algo.setup(pg.dna_spec(SPACE))
    best, curve = -math.inf, []
    for _ in range(n):
        dna = algo.propose()
        r = _toy(pg.materialize(SPACE, dna))
        algo.feedback(dna, r)
        best = max(best, r)
        curve.append(best)
    return statistics.mean(curve)


def test_tpe_beats_random_over_60_trials():
    seeds = range(4)
    tpe = statistics.mean(_best_so_far("tpe", s) for s in seeds)
    rnd = statistics.mean(_best_so_far("random", s) for s in seeds)
    assert tpe > rnd + 0.05  # per seed about 0.1 to 0.2 better


def test_nsga2_takes_tuples_and_finds_a_front():
    algo = _sampler("optuna_nsga2", population_size=6)
    assert algo.multi_objective
    for _ in range(24):
        dna = algo.propose()
        v = pg.materialize(SPACE, dna)
        algo.feedback(dna, (_toy(v), -math.log10(v["lr"])))
    assert algo.study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2
    assert all(len(t.values) == 2 for t in algo.study.trials)
    assert 1 <= len(algo.study.best_trials) < 24
    with pytest.raises(ConfigError, match=r"reward \(1.0, 2.0, 3.0\) has 3 objective\(s\) but "
                                          r"the Optuna study has 2; pass num_objectives=3"):
        algo.feedback(algo.propose(), (1.0, 2.0, 3.0))


def test_three_objectives_by_option():
    algo = _sampler("optuna_nsga2", num_objectives=3, population_size=4)
    dna = algo.propose()
    algo.feedback(dna, (1.0, 2.0, 3.0))
    assert algo.study.trials[0].values == [1.0, 2.0, 3.0]


def test_cmaes_and_gp_search_floats():
    space = pg.Dict(x=pg.floatv(-1.0, 1.0), y=pg.floatv(-1.0, 1.0), k=pg.oneof(["a", "b"]))
    for name, n in (("cmaes", 25), ("gp", 8)):
        algo = _sampler(name, space=space, n_startup_trials=3)
        for _ in range(n):
            dna = algo.propose()
            v = pg.materialize(space, dna)
            algo.feedback(dna, -(v["x"] - 0.3) ** 2 - (v["y"] + 0.2) ** 2)
        assert algo.study.best_value > -0.5
        assert type(algo.study.sampler).__name__ == {"cmaes": "CmaEsSampler",
                                                     "gp": "GPSampler"}[name]


def test_sampler_instance_is_copied_per_setup():
    mine = optuna.samplers.RandomSampler(seed=7)
    runs = []
    for _ in range(2):
        algo = OptunaSampler(sampler=mine)
        algo.setup(pg.dna_spec(SPACE))
        runs.append([algo.propose().to_numbers() for _ in range(5)])
    assert runs[0] == runs[1]


def test_bad_sampler_and_custom_decisions_are_config_errors():
    with pytest.raises(ConfigError, match="unknown Optuna sampler 'tpee'"):
        OptunaSampler(sampler="tpee")
    algo = OptunaSampler(sampler=42)
    with pytest.raises(ConfigError, match="got int"):
        algo.setup(pg.dna_spec(SPACE))

    class Opaque(pg.hyper.CustomHyper):
        def custom_decode(self, dna):
            return dna.value

        def random_dna(self, random_generator=None, previous_dna=None):
            return pg.DNA("v")

    with pytest.raises(ConfigError, match=r"OptunaSampler handles .*CustomDecisionPoint at 'w'"):
        _sampler(space=pg.Dict(w=Opaque(), b=pg.oneof([1, 2])))
    with pytest.raises(ConfigError, match="bad options"):
        make_algorithm("tpe", population_size=3)


def test_root_oneof_space():
    space = pg.oneof([1, pg.Dict(x=pg.oneof([2, 3])), 4])
    algo = _sampler(space=space)
    for _ in range(12):
        dna = algo.propose()
        pg.materialize(space, dna)
        algo.feedback(dna, 1.0)
    assert "(root)" in algo.study.trials[0].params
    fresh = _sampler(space=space)
    fresh.recover([(dna, 1.0)])
    assert fresh.study.trials[0].params == algo.study.trials[-1].params


BRANIN_SPACE = pg.Dict(x1=pg.floatv(-5.0, 10.0), x2=pg.floatv(0.0, 15.0))


def _branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6.0) ** 2 + 10.0 * (1 - t) * math.cos(x1) + 10.0


def _memnas_branin(name, seed, n=40):
    algo = make_algorithm(name, seed=seed)
    algo.setup(pg.dna_spec(BRANIN_SPACE))  # as pg.sample drives it
    best = math.inf
    for _ in range(n):
        dna = algo.propose()
        v = pg.materialize(BRANIN_SPACE, dna)
        loss = _branin(v["x1"], v["x2"])
        algo.feedback(dna, -loss)
        best = min(best, loss)
    return best


def _optuna_branin(seed, n=40):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: _branin(t.suggest_float("x1", -5.0, 10.0),
                                     t.suggest_float("x2", 0.0, 15.0)), n_trials=n)
    return study.best_value


def test_registered_tpe_searches_branin_as_plain_optuna_tpe_does():
    # Branin's minimum is 0.398. With Optuna's own defaults memnas's `tpe` is Optuna's
    # TPE (medians 0.515 over these seeds); the options it pinned before (an older
    # default: independent TPE) searched like random search (1.386; random 1.719).
    seeds = range(8)
    plain = statistics.median(_optuna_branin(s) for s in seeds)
    ours = statistics.median(_memnas_branin("tpe", s) for s in seeds)
    rnd = statistics.median(_memnas_branin("random", s) for s in seeds)
    assert ours <= plain + 0.15, (ours, plain)
    assert ours < rnd - 0.5, (ours, rnd)


@pytest.mark.parametrize("name,cls", [("tpe", "TPESampler"), ("gp", "GPSampler"),
                                      ("cmaes", "CmaEsSampler"), ("optuna_nsga2", "NSGAIISampler")])
def test_registered_samplers_pin_none_of_optunas_search_defaults(name, cls):
    options = make_algorithm(name, seed=0).sampler_options
    assert set(options) <= {"warn_independent_sampling"}, options  # only quiet warnings
    with pytest.raises(ConfigError, match=rf"bad options .*{cls} has no option 'bogus'"):
        make_algorithm(name, bogus=1)
