"""The Experiment page's trials table: filtered, sorted, paged, one column per decision."""

from __future__ import annotations

from typing import Any

import streamlit as st

from memnas.dashboard import _ui, analysis, data
from memnas.store.decisions import decision_column
from memnas.store import cachekinds
from memnas.store.reader import LEAN_COLUMNS, TAIL_COLUMNS

PAGE_SIZES = (25, 50, 100, 500)
CACHE_HELP = ("How the equivalence cache answered the trial: duplicate (the same candidate "
              "as the trial it reused), canonical (the same canonical form), functional (the "
              "same functional hash only); attached: it waited for a twin then running.")


def trials_section(df: Any, exp_id: int, name: str, url: str) -> None:
    """The trials table; a selected row links to its trial page."""
    st.subheader("Trials")
    if df.empty:
        st.info("No trials yet.")
        return
    c1, c2, c3, c4, c5 = st.columns([3, 3, 2, 1, 1])
    statuses = c1.multiselect("Status", sorted(df["status"].unique()),
                              key=f"memnas_tr_status_{exp_id}")
    text = c2.text_input("Summary contains", key=f"memnas_tr_text_{exp_id}")
    sortable = [c for c in df.columns if c not in ("summary", "error", "node", *LEAN_COLUMNS)]
    sort_by = c3.selectbox("Sort by", sortable, key=f"memnas_tr_sort_{exp_id}")
    descending = c4.toggle("Desc.", key=f"memnas_tr_desc_{exp_id}")
    size = c5.selectbox("Rows", PAGE_SIZES, index=1, key=f"memnas_tr_size_{exp_id}")
    rows = analysis.filter_trials(df, statuses, text, sort_by, descending)
    pages = max(1, -(-len(rows) // size))
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                           step=1, key=f"memnas_tr_page_{exp_id}")
    part = analysis.page_of(rows, int(page), size)
    shown = _rung_first(_with_cache_kinds(_with_decisions(part.rows, url, exp_id), url,
                                          exp_id).drop(columns=list(LEAN_COLUMNS),
                                                       errors="ignore"), df)
    event = st.dataframe(
        shown, hide_index=True, width="stretch", key="memnas_trials_table",
        on_select="rerun", selection_mode="single-row",
        column_config={
            "number": st.column_config.NumberColumn("#", pinned=True),
            "summary": st.column_config.TextColumn("summary", width="large"),
            "wall_time": st.column_config.NumberColumn("wall time (s)", format="%.2f"),
            "started_at": st.column_config.DatetimeColumn("started (UTC)"),
            "finished_at": st.column_config.DatetimeColumn("finished (UTC)"),
            "error": st.column_config.TextColumn("error", width="medium"),
            "cache": st.column_config.TextColumn("cache", help=CACHE_HELP),
        })
    st.caption(f"{part.total} of {len(df)} trials match; page {part.page} of {part.pages}. "
               "Select a row to open the trial.")
    selected = event.selection.rows if event is not None else []
    if selected:
        number = int(shown.iloc[selected[0]]["number"])
        st.page_link(_ui.TRIAL_PAGE, label=f"Open trial {number}",
                     icon=":material/account_tree:",
                     query_params={_ui.QUERY_PARAM: name, _ui.TRIAL_PARAM: str(number)})


def _rung_first(rows: Any, df: Any) -> Any:
    """A multi-fidelity experiment's table shows each trial's budget and parent after
    its status; the others' drop those empty columns."""
    rung = [c for c in ("budget", "parent") if c in rows.columns]
    if not data.has_budgets(df):
        return rows.drop(columns=rung)
    rest = [c for c in rows.columns if c not in rung]
    return rows[[*rest[:2], *rung, *rest[2:]]]


def cache_label(how: str, kind: str) -> str:
    """A cached trial's ``cache`` cell: its kind, ``attached`` when it waited for a twin."""
    if kind == "unknown":
        return how if how == "attached" else "hit (kind unknown)"
    return f"{kind} (attached)" if how == "attached" else kind


def _with_cache_kinds(rows: Any, url: str, exp_id: int) -> Any:
    """A page of the trials table with a ``cache`` column after ``cached_from``: how the
    equivalence cache answered each trial (`cache_label`), empty for the others."""
    answered = rows["cache_kind"].notna() if "cache_kind" in rows else []
    if not len(rows) or not any(answered):
        return rows
    ids = [int(i) for i in rows["id"][answered]]
    ok, kinds = _ui.guarded(_page_kinds, url, exp_id, ids)
    if not ok:
        return rows
    labels = {i: cache_label(how, kind) for i, (_, how, kind) in kinds.items()}
    columns = list(rows.columns)
    at = columns.index("cached_from") + 1 if "cached_from" in columns else len(columns)
    rows = rows.copy()
    name = "cache" if "cache" not in columns else "cache match"  # a metric named cache
    rows.insert(at, name, rows["id"].map(labels).fillna(""))
    return rows


def _page_kinds(url: str, exp_id: int, ids: list[int]) -> dict[int, tuple[str, str, str]]:
    return cachekinds.cache_kinds(_ui.get_store(url), exp_id, ids)


def _with_decisions(rows: Any, url: str, exp_id: int) -> Any:
    """A page of the trials table with one column per decision, before the tail columns."""
    ok, decisions = _ui.guarded(_ui.load_page_decisions, url, exp_id,
                                [int(i) for i in rows["id"]])
    if not ok or decisions is None or decisions.shape[1] <= 1:
        return rows
    names = {k: decision_column(k, rows.columns) for k in decisions.columns[1:]}
    decisions = decisions.rename(columns=names)
    head = [c for c in rows.columns if c not in TAIL_COLUMNS and c not in LEAN_COLUMNS]
    merged = rows.merge(decisions, on="number", how="left")
    return merged[[*head, *names.values(), *[c for c in rows.columns if c not in head]]]
