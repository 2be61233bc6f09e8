"""Streamlit plumbing shared by the pages: store URL, cached reads, sidebar, navigation."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, NamedTuple

import streamlit as st
from sqlalchemy.exc import DBAPIError

from memnas.dashboard import ENV_VAR
from memnas.dashboard._serve import file_state, sqlite_path
from memnas.errors import StoreError
from memnas.store import DEFAULT_URL, Store, normalize_url, reader

HERE = os.path.dirname(os.path.abspath(__file__))
EXPERIMENTS_PAGE = os.path.join(HERE, "views", "experiments.py")
EXPERIMENT_PAGE = os.path.join(HERE, "views", "experiment.py")
TRIAL_PAGE = os.path.join(HERE, "views", "trial.py")
COMPARE_PAGE = os.path.join(HERE, "views", "compare.py")

QUERY_PARAM = "experiment"
TRIAL_PARAM = "trial"
SELECT_KEY = "memnas_experiment"
GOTO_KEY = "memnas_goto_experiment"
LIVE_KEY = "memnas_live"
READ_TTL_S = 3
FRAME_TTL_S = 12 * 3600
"""Lifetime of the reads keyed by an experiment's trial stamp (frames, derived data).

They are never stale (a new trial changes the key); the TTL and ``max_entries`` only free
memory. Long, so that what the server warmed at start is still there for the first visit.
"""
LIVE_EVERY_S = 5
WAIT_EVERY_S = 2
"""How often a page that cannot read its SQLite store looks whether the file changed."""


def store_url() -> str:
    """The store URL the app shows: ``$MEMNAS_STORE`` or ``sqlite:///memnas.db``."""
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT_URL


def display_url(url: str) -> str:
    """``url`` with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def one_line(e: BaseException, url: str) -> str:
    """A one-line message for an error met while reading the store at ``url``."""
    if isinstance(e, StoreError):
        return str(e).strip().splitlines()[0]
    orig = getattr(e, "orig", None) or e
    first = (str(orig).strip().splitlines() or [""])[0]
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        # SQLite / PostgreSQL: a database without memnas's tables.
        return f"store {display_url(url)!r} has no memnas tables ({first}); is it a memnas store?"
    return f"cannot read store {display_url(url)!r}: {type(orig).__name__}: {first}"


def gone_message(url: str, path: str) -> str:
    """The one line shown while the SQLite file of a store the dashboard had open is missing."""
    return (f"store {display_url(normalize_url(url))!r} is gone: file {path!r} no longer "
            "exists; waiting for it")


class _Held(NamedTuple):
    store: Store | None  # None: closed (its file went away, or a read failed)
    state: tuple[int, ...] | None  # `file_state` of its file when opened
    first: Any  # its first experiment (id, name, created): another store has another


@st.cache_resource(show_spinner=False)
def _opened() -> tuple[dict[str, _Held], threading.Lock]:
    return {}, threading.Lock()


def _first(store: Store) -> tuple | None:
    rows = sorted((e["id"], e["name"], str(e.get("created_at"))) for e in store.experiments())
    return rows[0] if rows else None


def get_store(url: str) -> Store:
    """The read-only `Store` at ``url``, one per URL per server process.

    A SQLite store's file is looked at on every call. Deleted: the store is closed and
    every call raises `gone_message` until a file is back. Changed (another file at the
    path, or this one written): the store is closed, before the file is opened again so
    its WAL is never paired with another file, and when the file is another store (another
    file, or one rewritten in place with another first experiment) every cached read is
    dropped.

    Raises:
      StoreError: the store cannot be opened (one line), or its file is gone.
    """
    path = sqlite_path(url)
    state = file_state(path) if path else None
    held, lock = _opened()
    other = False
    try:
        with lock:
            old = held.get(url)
            if old is not None and old.store is not None:
                if old.state == state and (state is not None or path is None):
                    return old.store
                with contextlib.suppress(Exception):
                    old.store.close()
                held[url] = old = old._replace(store=None, state=old.state if state else None)
            if path is not None and state is None and old is not None:
                raise StoreError(gone_message(url, path))
            store = Store(url, read_only=True)
            try:
                first = _first(store)
            except Exception:
                store.close()
                raise
            other = old is not None and (old.state is None or old.state[:2] != state[:2]
                                         or old.first != first)
            held[url] = _Held(store, state, first)
            return store
    finally:
        if other:  # outside the lock: reads computing now may be waiting for it
            _clear_reads()


def forget_store(url: str) -> None:
    """Closes the store at ``url`` and drops every cached read: the next read reopens it."""
    held, lock = _opened()
    with lock:
        old = held.get(url)
        if old is not None and old.store is not None:
            held[url] = _Held(None, None, old.first)
            with contextlib.suppress(Exception):
                old.store.close()
    _clear_reads()


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_experiments(url: str) -> list[dict[str, Any]]:
    """``Store.experiments()``, cached for a few seconds."""
    return get_store(url).experiments()


@st.cache_data(ttl=FRAME_TTL_S, max_entries=40, show_spinner=False)
def _cache_counters(url: str, exp_id: int, stamp: tuple) -> dict[str, float]:
    return get_store(url).cache_counters(exp_id)


def load_cache_counters(url: str, exp_id: int) -> dict[str, float]:
    """``Store.cache_counters(exp_id)``, reread only when the experiment's trials change."""
    return _cache_counters(url, exp_id, load_stamp(url, exp_id))


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_curve(url: str, trial_id: int) -> list[dict[str, Any]]:
    """``Store.curve(trial_id)``, cached for a few seconds."""
    return get_store(url).curve(trial_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_stamp(url: str, exp_id: int) -> tuple:
    """`memnas.store.reader.stamp`: changes whenever the experiment's trials do."""
    return reader.stamp(get_store(url), exp_id)


@st.cache_resource(ttl=FRAME_TTL_S, max_entries=6, show_spinner=False)
def _frame(url: str, exp_id: int, objectives: tuple, stamp: tuple) -> Any:
    # A resource, not cache_data: a 100k-row frame is shared, never copied per rerun.
    return reader.trials_frame(get_store(url), exp_id, dict(objectives))


def load_frame(url: str, exp_id: int, objectives: dict[str, str]) -> Any:
    """The experiment's trials table (`memnas.store.reader.trials_frame`), reread only
    when they change.

    Treat it as read-only: it is shared between sessions.
    """
    return _frame(url, exp_id, tuple(objectives.items()), load_stamp(url, exp_id))


@st.cache_data(ttl=FRAME_TTL_S, max_entries=40, show_spinner=False)
def _derived(url: str, exp_id: int, objectives: tuple, stamp: tuple, what: str,
             args: tuple) -> Any:
    from memnas.dashboard import analysis, data

    df = _frame(url, exp_id, objectives, stamp)
    fn = {"pareto": data.pareto_info, "hypervolume": analysis.hypervolume_over_time,
          "best": data.best_so_far}[what]
    return fn(df, *args)


def derived(url: str, exp_id: int, objectives: dict[str, str], what: str, *args: Any) -> Any:
    """``data.pareto_info`` / ``analysis.hypervolume_over_time`` / ``data.best_so_far``
    of the experiment's trials frame, cached until its trials change."""
    return _derived(url, exp_id, tuple(objectives.items()), load_stamp(url, exp_id), what,
                    args)


@st.cache_data(ttl=FRAME_TTL_S, max_entries=20, show_spinner=False)
def _decision_keys(url: str, exp_id: int, stamp: tuple) -> list[str]:
    return reader.decision_keys(get_store(url), exp_id)


def load_decision_keys(url: str, exp_id: int) -> list[str]:
    """The experiment's decision names, most frequent first (`reader.decision_keys`)."""
    return _decision_keys(url, exp_id, load_stamp(url, exp_id))


@st.cache_resource(ttl=FRAME_TTL_S, max_entries=12, show_spinner=False)
def _decisions(url: str, exp_id: int, names: tuple, every: int, stamp: tuple) -> Any:
    return reader.decisions_frame(get_store(url), exp_id, names, every)


def load_decisions(url: str, exp_id: int, names: list[str], every: int = 1) -> Any:
    """Some decisions of the experiment's trials (`reader.decisions_frame`), reread only
    when trials change."""
    return _decisions(url, exp_id, tuple(names), every, load_stamp(url, exp_id))


@st.cache_data(ttl=FRAME_TTL_S, max_entries=40, show_spinner=False)
def _page_decisions(url: str, exp_id: int, ids: tuple, stamp: tuple) -> Any:
    return reader.decisions_frame(get_store(url), exp_id, ids=ids)


def load_page_decisions(url: str, exp_id: int, ids: list[int]) -> Any:
    """Every decision of some trials (by id: a page of the trials table), reread only
    when trials change."""
    return _page_decisions(url, exp_id, tuple(ids), load_stamp(url, exp_id))


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_summary(url: str) -> tuple[dict, dict]:
    """Running times and best values of every experiment, for the experiments table."""
    store = get_store(url)
    times = reader.experiment_times(store)
    bests = {e["id"]: reader.best_values(store, e["id"], e.get("objectives") or {})
             for e in load_experiments(url)}
    return times, bests


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_numbers(url: str, exp_id: int) -> tuple[int, int, int] | None:
    """(lowest, highest, count) of the experiment's trial numbers; None without trials."""
    return reader.number_range(get_store(url), exp_id)


@st.cache_data(ttl=READ_TTL_S, show_spinner=False)
def load_trial(url: str, exp_id: int | None, number: int | None,
               trial_id: int | None = None) -> dict[str, Any] | None:
    """One full trial row (`memnas.store.reader.trial_row`), cached for a few seconds."""
    return reader.trial_row(get_store(url), exp_id, number, trial_id)


def load_artifacts(url: str, trial_id: int) -> list[Any] | None:
    """``Store.artifacts(trial_id)`` where this memnas's store has it, else None."""
    fn = getattr(get_store(url), "artifacts", None)
    return None if fn is None else list(fn(trial_id) or [])


def guarded(fn: Callable[..., Any], url: str, *args: Any) -> tuple[bool, Any]:
    """Calls ``fn(url, *args)``; on an error shows it in one line and returns (False, None)."""
    try:
        return True, fn(url, *args)
    except Exception as e:  # the dashboard reports, it never shows a traceback
        if isinstance(e, DBAPIError):  # e.g. the file was rewritten in place: reopen it
            forget_store(url)
        st.error(one_line(e, url), icon=":material/error:")
        return False, None


def experiments() -> list[dict[str, Any]] | None:
    """The store's experiments, or None after showing why they cannot be read."""
    url = store_url()
    ok, store = guarded(get_store, url)
    if not ok:
        return None
    ok, rows = guarded(load_experiments, url)
    return rows if ok else None


def _picked() -> None:
    st.query_params[QUERY_PARAM] = st.session_state[SELECT_KEY]
    st.session_state[GOTO_KEY] = True


def experiment_selector(names: list[str]) -> None:
    """The sidebar's experiment selectbox, kept in step with ``?experiment=NAME``."""
    if not names:
        st.session_state.pop(SELECT_KEY, None)
        return
    wanted = st.query_params.get(QUERY_PARAM)
    if wanted in names:
        st.session_state[SELECT_KEY] = wanted
    elif st.session_state.get(SELECT_KEY) not in names:
        st.session_state[SELECT_KEY] = names[0]
    st.sidebar.selectbox("Experiment", names, key=SELECT_KEY, on_change=_picked)


def selected_experiment() -> str | None:
    """The experiment chosen in the sidebar (None in an empty store)."""
    return st.session_state.get(SELECT_KEY)


def live(body: Callable[[], None]) -> None:
    """Runs a page body, every few seconds again when live update is on."""
    if st.session_state.get(LIVE_KEY):
        st.fragment(run_every=LIVE_EVERY_S)(body)()
    else:
        body()


def _refresh() -> None:
    for fn in (load_experiments, load_curve, load_stamp, load_summary, load_trial,
               load_numbers):
        fn.clear()


def _clear_reads() -> None:
    for fn in (load_experiments, _cache_counters, load_curve, load_stamp, _frame, _derived,
               _decision_keys, _decisions, _page_decisions, load_summary, load_numbers,
               load_trial):
        fn.clear()


def _wait_for_change(url: str) -> None:
    """After a store error on a SQLite file: reruns the app once the file changes (is put
    back, replaced or rewritten), looking every `WAIT_EVERY_S` seconds."""
    path = sqlite_path(url)
    if path is None:
        return
    seen = file_state(path)

    def look() -> None:
        if file_state(path) != seen:
            st.rerun()

    st.fragment(run_every=WAIT_EVERY_S)(look)()


def main() -> None:
    """The entry script: page config, store check, sidebar, then the chosen page."""
    st.set_page_config(page_title="memnas", page_icon=":material/insights:", layout="wide")
    pages = [st.Page(EXPERIMENTS_PAGE, title="Experiments", icon=":material/table_rows:",
                     url_path="experiments", default=True),
             st.Page(EXPERIMENT_PAGE, title="Experiment", icon=":material/insights:",
                     url_path="experiment"),
             st.Page(TRIAL_PAGE, title="Trial", icon=":material/account_tree:",
                     url_path="trial"),
             st.Page(COMPARE_PAGE, title="Compare", icon=":material/compare_arrows:",
                     url_path="compare")]
    current = st.navigation(pages)
    url = store_url()
    st.sidebar.caption(f"Store: `{display_url(url)}` (read-only)")
    rows = experiments()
    if rows is None:
        _wait_for_change(url)
        st.stop()
    experiment_selector([e["name"] for e in rows])
    st.sidebar.toggle(f"Live update (every {LIVE_EVERY_S} s)", key=LIVE_KEY)
    st.sidebar.button("Refresh now", on_click=_refresh, icon=":material/refresh:")
    if st.session_state.pop(GOTO_KEY, False) and current.url_path not in ("experiment",
                                                                          "trial"):
        st.switch_page(EXPERIMENT_PAGE,
                       query_params={QUERY_PARAM: st.session_state[SELECT_KEY]})
    current.run()
