"""The server's warm-up: `memnas dashboard` fills the pages' caches before it serves."""

from __future__ import annotations

import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard_helpers import CACHED, MEMORY, TWO
from memnas.dashboard import ENV_VAR, _serve, _ui, app_path, data
from memnas.store import reader


@pytest.fixture
def cold():
    """Empty caches before and after (they are the process's, shared with other tests)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def _broken(*args, **kwargs):
    raise AssertionError("read again: the warm-up did not fill the cache")


def test_warm_fills_what_the_experiment_page_reads_first(monkeypatch, dashboard_store, cold):
    out = _serve.warm(dashboard_store, experiments=3)
    assert out["error"] is None and out["seconds"] > 0
    assert out["experiments"] == [CACHED, MEMORY, out["experiments"][2]]  # newest first
    # The most recent experiments' first view now comes from the caches alone.
    monkeypatch.setattr(reader, "trials_frame", _broken)
    monkeypatch.setattr(data, "pareto_info", _broken)
    monkeypatch.setenv(ENV_VAR, dashboard_store)
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    at.query_params["experiment"] = MEMORY
    at.switch_page("views/experiment.py").run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"]
              for c in at.get("plotly_chart")]
    assert len(titles) == 1 and titles[0].startswith("Pareto front")
    assert len(at.dataframe[0].value) == 5


def test_an_experiment_not_warmed_is_read_on_its_first_visit(monkeypatch, dashboard_store,
                                                            cold):
    _serve.warm(dashboard_store, experiments=1)  # only the newest one
    monkeypatch.setattr(reader, "trials_frame", _broken)
    monkeypatch.setenv(ENV_VAR, dashboard_store)
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    at.query_params["experiment"] = TWO
    at.switch_page("views/experiment.py").run()
    errors = "\n".join(e.value for e in at.error)
    assert "read again" in errors  # the read was not cached: the test's stand-in refused it


def test_warm_never_fails_the_server(tmp_path, cold):
    out = _serve.warm(f"sqlite:///{tmp_path}/missing/store.db")
    assert out["experiments"] == [] and "does not exist" in out["error"]


def test_warmed_frames_outlive_the_wait_for_a_first_visitor():
    # Frames are keyed by the trials' stamp, so they are never stale; the TTL only frees
    # memory, and must not expire the warm-up before someone opens the page.
    assert _ui.FRAME_TTL_S >= 6 * 3600


def test_main_warms_then_runs_streamlit_on_the_app(monkeypatch, dashboard_store, capsys):
    from streamlit.web import cli

    calls = []
    monkeypatch.setenv(ENV_VAR, dashboard_store)
    monkeypatch.setattr(_serve, "warm", lambda url: calls.append(("warm", url)) or
                        {"experiments": [TWO], "seconds": 0.5, "error": None})
    monkeypatch.setattr(cli, "main", lambda args, prog_name: calls.append(("run", args)))
    _serve.main(["--server.port", "8600"])
    assert calls == [("warm", dashboard_store),
                     ("run", ["run", app_path(), "--server.port", "8600"])]
    assert "warmed 1 experiment(s) in 0.5 s" in capsys.readouterr().err


def test_ctrl_c_while_warming_stops_quietly(monkeypatch):
    def interrupted(url):
        raise KeyboardInterrupt

    monkeypatch.setattr(_serve, "warm", interrupted)
    with pytest.raises(SystemExit) as stop:
        _serve.main([])
    assert stop.value.code == 0


@pytest.fixture
def taken_port():
    """A port another process (this test) listens on, on 127.0.0.1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_dashboard_on_a_taken_port_is_one_line_before_any_url_or_warm_up(
        monkeypatch, empty_store, taken_port):
    import memnas.dashboard
    from click.testing import CliRunner

    from memnas.cli import main

    started = []
    monkeypatch.setattr(memnas.dashboard, "launch",
                        lambda *a, **k: started.append(a) or print("warmed 0 experiment(s)") or 1)
    r = CliRunner().invoke(main, ["dashboard", "--store", empty_store, "--port", str(taken_port)])
    assert r.exit_code == 2, r.output
    assert r.output == f"error: port {taken_port} on 127.0.0.1 is in use; pick another with " \
                       "--port\n"
    assert started == []  # nothing printed, warmed or served


def test_launch_refuses_a_taken_port_before_starting_the_server(monkeypatch, taken_port):
    import subprocess

    import memnas.dashboard
    from memnas.errors import ConfigError

    def never(*args, **kwargs):
        raise AssertionError("started the server on a taken port")

    monkeypatch.setattr(subprocess, "Popen", never)
    with pytest.raises(ConfigError, match=f"port {taken_port} on 127.0.0.1 is in use"):
        memnas.dashboard.launch("sqlite:///x.db", port=taken_port)
    memnas.dashboard.check_port(0)  # any free port passes
