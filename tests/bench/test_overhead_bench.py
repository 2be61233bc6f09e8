"""`memnas bench overhead` and `memnas bench scaling` in quick mode: keys and sanity, no timings."""

import math

from memnas.bench import available, overhead, scaling


def test_benchmarks_are_listed():
    assert {"overhead", "scaling"} <= set(available())


def test_overhead_quick_reports_all_three_systems():
    out = overhead.run(quick=True)
    for key in ("memnas_tps", "tune_tps", "optuna_sqlite_tps", "memnas_vs_tune",
                "memnas_vs_optuna", "memnas_batch1_tps", "memnas_batch1_vs_tune", "ray_start_s",
                "memnas_tps_with_start", "tune_tps_with_start"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["trials"] == 40 and out["workers"] == 2
    # Each rate is over the trials its system actually recorded, read back after the run.
    assert out["recorded"] == {"memnas_batch1": {"completed": 40}, "memnas": {"completed": 40},
                               "tune": {"results": 40, "errors": 0},
                               "optuna_sqlite": {"COMPLETE": 40}}


def test_scaling_quick_reports_speedup_and_overhead_share():
    out = scaling.run(quick=True)
    assert out["trials"] == 4
    assert out["wall_1_worker_s"] > 0 and out["wall_2_workers_s"] > 0
    assert out["speedup_2_workers"] > 0
    assert out["walls_s"] == {1: [out["wall_1_worker_s"]], 2: [out["wall_2_workers_s"]]}
    assert 0 <= out["overhead_share"] < 1 and 0 <= out["overhead_share_1_worker"] < 1
    assert out["trial_s"] > 0 and set(out["trial_cpu_share"]) == {1, 2}
    assert out["speedup_2_plain_processes"] > 0 and len(out["plain_walls_s"][2]) == 1
    assert out["scaling_efficiency_vs_plain"] > 0


def test_spin_calibration_is_proportional():
    n = scaling.calibrate(0.05, probe=20_000, repeats=1)
    assert n > 0 and scaling.spin(10) == scaling.spin(10)
