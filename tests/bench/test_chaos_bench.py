"""`memnas bench chaos`: Ray workers SIGKILLed at random while short trials run lose nothing."""

from __future__ import annotations

import json

from memnas.bench import run_bench


def test_killed_workers_lose_no_trial_and_run_none_twice(tmp_path):
    out = tmp_path / "chaos.json"
    figures = run_bench("chaos", json_path=str(out), quick=True, trials=80,
                        kill_every_s=0.4, backend="sqlite")
    assert json.loads(out.read_text()) == figures
    assert figures["trials"] == 80 and figures["kills"] >= 3
    assert figures["retries"] >= 1                      # killed trials ran again ...
    assert figures["chaos"]["completed"] == 80          # ... and every one finished once
    assert figures["lost"] == figures["duplicated"] == figures["left_running"] == 0
    assert figures["quiet"]["kills"] == 0 and figures["slowdown"] > 0
