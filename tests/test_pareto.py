import numpy as np
import pytest

from memnas.pareto import check_objectives, hypervolume_2d, pareto_mask


def _brute(values, directions):
    v = np.asarray(values, float) * np.array([-1 if d == "max" else 1 for d in directions])
    n = len(v)
    out = np.ones(n, bool)
    for i in range(n):
        if np.isnan(v[i]).any():
            out[i] = False
            continue
        for j in range(n):
            if j != i and not np.isnan(v[j]).any() and np.all(v[j] <= v[i]) and np.any(v[j] < v[i]):
                out[i] = False
                break
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(60, k)).astype(float)  # many ties
    values[3, 0] = np.nan
    directions = ["max", "min", "max"][:k]
    assert (pareto_mask(values, directions) == _brute(values, directions)).all()


def test_pareto_mask_directions():
    values = np.array([[0.9, 100], [0.8, 10], [0.7, 50], [0.9, 100]])
    assert pareto_mask(values, ["max", "min"]).tolist() == [True, True, False, True]
    assert pareto_mask(values, ["min", "max"]).tolist() == [True, False, True, True]


def test_hypervolume_2d():
    values = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    # maximise both from reference (0, 0); the exact area is counted on a fine grid
    grid = sum(1 for x in np.arange(0.25, 3, 0.5) for y in np.arange(0.25, 3, 0.5)
               if any(x < a and y < b for a, b in values)) * 0.25
    assert hypervolume_2d(values, ["max", "max"], [0.0, 0.0]) == pytest.approx(grid)
    assert hypervolume_2d(values, ["max", "max"], [5.0, 5.0]) == 0.0


def test_check_objectives_errors():
    with pytest.raises(ValueError, match="'maximize'"):
        check_objectives({"accuracy": "maximize"})
    with pytest.raises(ValueError, match="non-empty"):
        check_objectives({})
