"""The dashboard as a service: the SSH tunnel hint, a newer store, a store file deleted or
replaced while it serves (AppTest for the data, the real server and Chromium for serving)."""

from __future__ import annotations

import os
import shutil
import socket

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from dashboard_helpers import health, serve_dashboard
from memnas.bench.synthetic import fill
from memnas.dashboard import ENV_VAR, _ui, app_path, ssh_hint
from memnas.dashboard import browser as headless
from memnas.errors import StoreError
from memnas.store import Store

SSH = {"SSH_CONNECTION": "10.1.2.3 50022 10.9.8.7 22", "USER": "alice"}


def _remove(path: str) -> None:
    """Deletes a SQLite store file with its -wal and -shm."""
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.exists(p):
            os.remove(p)


def _put(src: str, path: str) -> None:
    """Puts a copy of store file ``src`` at ``path`` at once (copy, then rename over)."""
    shutil.copyfile(src, path + ".tmp")
    os.replace(path + ".tmp", path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, str]:
    """Store files, each written and closed: alpha (20 trials), alpha30 (alpha with 30
    trials) and beta (another experiment)."""
    folder = tmp_path_factory.mktemp("service_stores")
    out = {}
    for key, name, trials in [("alpha", "alpha", 20), ("alpha30", "alpha", 30),
                              ("beta", "beta", 12)]:
        out[key] = str(folder / f"{key}.db")
        fill(f"sqlite:///{out[key]}", trials, name=name, curves=0)
    return out


# ---- the tunnel hint ------------------------------------------------------------------


def test_no_hint_outside_an_ssh_session():
    assert ssh_hint(8501, {"USER": "alice"}) is None


def test_hint_names_the_port_user_and_server_address():
    assert ssh_hint(8600, SSH) == ("from your laptop: ssh -N -L 8600:127.0.0.1:8600 "
                                   "alice@10.9.8.7, then open http://127.0.0.1:8600")


def test_hint_with_another_ssh_port_or_no_server_address():
    env = {"SSH_CONNECTION": "10.1.2.3 50022 10.9.8.7 2222", "LOGNAME": "bob"}
    assert ssh_hint(8501, env).startswith("from your laptop: ssh -N -p 2222 -L "
                                          "8501:127.0.0.1:8501 bob@10.9.8.7, ")
    host = socket.gethostname()  # SSH_CLIENT has no server address; a loopback one is no use
    assert f" alice@{host}, " in ssh_hint(8501, {"SSH_CLIENT": "10.1.2.3 50022 22",
                                                 "USER": "alice"})
    assert f" {host}, " in ssh_hint(8501, {"SSH_CONNECTION": "::1 50022 ::1 22"})


# ---- a newer store ---------------------------------------------------------------------


def test_a_newer_store_is_one_line_on_every_page(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path}/newer.db"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a newer memnas leaves it
        conn.execute(sa.text("UPDATE memnas_alembic_version SET version_num = '0099_later'"))
    engine.dispose()
    with pytest.raises(StoreError) as refused:
        Store(url, read_only=True)
    monkeypatch.setenv(ENV_VAR, url)
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    for page in (None, "views/experiment.py", "views/compare.py"):
        if page:
            at.switch_page(page).run()
        assert not at.exception
        assert [e.value for e in at.error] == [str(refused.value)]
        assert "is newer than this memnas" in at.error[0].value and "\n" not in at.error[0].value
        assert not at.dataframe and not at.sidebar.selectbox


# ---- the store file deleted or replaced while serving ----------------------------------


def _names(at: AppTest) -> list[str]:
    return list(at.sidebar.selectbox[0].options) if at.sidebar.selectbox else []


def test_deleted_store_is_one_line_until_a_file_is_back(monkeypatch, tmp_path, stores):
    path = str(tmp_path / "store.db")
    _put(stores["alpha"], path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv(ENV_VAR, url)
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    assert _names(at) == ["alpha"] and not at.error
    _remove(path)
    for _ in range(2):  # the cached store and reads are not served: each run says so
        at.run()
        assert not at.exception
        assert [e.value for e in at.error] == [_ui.gone_message(url, path)]
        assert not at.dataframe and _names(at) == []
    assert not os.path.exists(path)  # the read-only dashboard created nothing
    _put(stores["beta"], path)
    at.run()
    assert not at.exception and not at.error
    assert _names(at) == ["beta"] and list(at.dataframe[0].value["name"]) == ["beta"]


def test_replaced_store_is_read_afresh(monkeypatch, tmp_path, stores):
    path = str(tmp_path / "store.db")
    _put(stores["alpha"], path)
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{path}")
    at = AppTest.from_file(app_path(), default_timeout=30).run()
    at.query_params["experiment"] = "alpha"
    at.switch_page("views/experiment.py").run()
    assert {m.label: m.value for m in at.metric}["trials"] == "20"
    _put(stores["alpha30"], path)  # same experiment name and id, other trials
    at.run()  # at once: no cached read of the old file outlives it
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["trials"] == "30"
    assert len(at.dataframe(key="memnas_trials_table").value) == 30
    inode = os.stat(path).st_ino
    shutil.copyfile(stores["alpha"], path)  # rewritten in place, as `cp` does
    assert os.stat(path).st_ino == inode
    at.run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["trials"] == "20"
    assert len(at.dataframe(key="memnas_trials_table").value) == 20


# ---- the real server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(stores, tmp_path_factory):
    """`memnas dashboard` (the CLI, in an SSH session) on a copy of store alpha.

    Yields:
      (base URL, port, store path, log path).
    """
    folder = tmp_path_factory.mktemp("service_served")
    path, log = str(folder / "store.db"), folder / "server.log"
    _put(stores["alpha"], path)
    with serve_dashboard(path, log, env=SSH) as base:
        yield base, int(base.rsplit(":", 1)[1]), path, log


def test_memnas_dashboard_prints_the_tunnel_once_in_an_ssh_session(served):
    _, port, _, log = served
    lines = [ln for ln in log.read_text().splitlines() if "from your laptop" in ln]
    assert lines == [f"memnas dashboard: from your laptop: ssh -N -L {port}:127.0.0.1:{port} "
                     f"alice@10.9.8.7, then open http://127.0.0.1:{port}"]


def _has_text(text: str) -> str:
    return f"() => document.body.innerText.includes({text!r})"


def _selected(name: str) -> str:
    """A ready condition: the sidebar's experiment picker shows ``name``, the table is drawn."""
    return (f"() => Array.from(document.querySelectorAll('input[aria-label=\"Experiment\"]'))"
            f".some((i) => i.value === {name!r}) && ({headless.TABLE_JS})()")


@pytest.mark.skipif(headless.find_chromium() is None, reason="no Chromium found")
def test_server_keeps_serving_while_its_store_is_gone_and_back(served, stores):
    pytest.importorskip("playwright.sync_api")
    base, _, path, log = served
    with headless.browser() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        headless.load(page, base + "/", _selected("alpha"), timeout_s=60)
        assert headless.errors(page) == []
        _remove(path)
        page.reload(wait_until="commit")
        page.wait_for_function(_has_text("is gone"), timeout=30_000)
        shown = headless.errors(page)  # "error: " and the icon's name, then the message
        assert len(shown) == 1 and shown[0].endswith(f"\n{_ui.gone_message(path, path)}")
        assert "Traceback" not in page.inner_text("body")
        assert health(base) == 200
        _put(stores["beta"], path)  # the page looks again by itself: no reload
        page.wait_for_function(_selected("beta"), timeout=30_000)
        assert headless.errors(page) == [] and health(base) == 200
    assert "Traceback" not in log.read_text()
