"""The dashboard reading a live SQLite store never disturbs the run writing it."""

import os
import subprocess
import sys
import textwrap

import pytest

import memnas
import toyspace

pytestmark = pytest.mark.slow

READER = textwrap.dedent("""
    import os, sys, time
    from streamlit.testing.v1 import AppTest
    from memnas.dashboard import app_path
    stop, renders, errors = sys.argv[1], 0, []
    while not os.path.exists(stop):
        for page in (None, "experiment"):
            at = AppTest.from_file(app_path(), default_timeout=30)
            if page:
                at.query_params["experiment"] = "live"
            at.run()
            renders += 1
            errors += [str(e.value) for e in at.exception]
            errors += [e.value for e in at.error if "no experiment" not in e.value
                       and "does not exist" not in e.value and "not a memnas store" not in e.value]
    print(renders, len(errors))
    print("\\n".join(errors[:5]))
""")


def test_dashboard_reads_while_a_search_writes(tmp_path):
    url = f"sqlite:///{tmp_path}/live.db"
    exp = memnas.Experiment(name="live", space=toyspace.point_space(),
                            evaluator=toyspace.evaluate, algorithm="random",
                            objectives={"accuracy": "max", "params": "min"}, store=url)
    exp.run(max_trials=1, executor="local")  # the store exists before the reader starts
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(stop)],
                              env={**os.environ, "MEMNAS_STORE": url},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy = memnas.Experiment(name="live", space=toyspace.point_space(),
                             evaluator=toyspace.evaluate_brief, algorithm="random",
                             objectives={"accuracy": "max", "params": "min"}, store=url)
    try:
        busy.run(max_trials=300, workers=2, executor="local")  # ~1,200 write transactions
        busy.run(max_trials=301, executor="local")  # a second driver opening the store
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    df = memnas.load("live", url).trials()
    assert len(df) == 301 and set(df["status"]) == {"completed"}
    renders, n_errors = (int(x) for x in out.splitlines()[0].split())
    assert renders >= 4, err[-2000:]
    assert n_errors == 0, out
