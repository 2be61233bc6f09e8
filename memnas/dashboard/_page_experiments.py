"""The Experiments page: every experiment with status, counts, best values, running time."""

from __future__ import annotations

import streamlit as st

from memnas.dashboard import _ui, analysis

SORTABLE = ("updated", "created", "name", "status", "trials", "done", "failed", "cached",
            "running time (s)")


def experiments_page() -> None:
    """The table of all experiments, filtered and sorted; a selected row opens it."""
    st.title("Experiments")
    _ui.live(_body)


def _body() -> None:
    rows = _ui.experiments()
    if rows is None:
        return
    if not rows:
        st.info("No experiments in this store yet. Start one with `memnas run FILE` or "
                "`memnas.Experiment(...).run()` and it appears here.")
        return
    url = _ui.store_url()
    ok, summary = _ui.guarded(_ui.load_summary, url)
    if not ok:
        return
    times, bests = summary
    df = analysis.experiments_summary(rows, times, bests)
    c1, c2, c3, c4 = st.columns([3, 3, 2, 1])
    text = c1.text_input("Filter by name", key="memnas_exps_filter",
                         placeholder="part of a name")
    statuses = c2.multiselect("Status", sorted(df["status"].unique()),
                              key="memnas_exps_status")
    sortable = [*SORTABLE, *[c for c in df.columns if c.startswith("best ")]]
    sort_by = c3.selectbox("Sort by", sortable, key="memnas_exps_sort")
    descending = c4.toggle("Descending", value=True, key="memnas_exps_desc")
    if text:
        df = df[df["name"].str.contains(text, case=False, regex=False)]
    if statuses:
        df = df[df["status"].isin(statuses)]
    df = df.sort_values(sort_by, ascending=not descending, kind="stable",
                        na_position="last").reset_index(drop=True)
    if df.empty:
        st.info("No experiment matches the filter.")
        return
    event = st.dataframe(
        df, hide_index=True, on_select="rerun", selection_mode="single-row",
        key="memnas_experiments_table", width="stretch",
        column_config={
            "name": st.column_config.TextColumn("name", pinned=True),
            "done": st.column_config.NumberColumn("done", help="completed or cached trials"),
            "cached": st.column_config.NumberColumn("cached",
                                                    help="answered by the equivalence cache"),
            "running time (s)": st.column_config.NumberColumn(
                "running time (s)", format="%.0f",
                help="first trial's start to last trial's finish"),
            "created": st.column_config.TextColumn("created (UTC)"),
            "updated": st.column_config.TextColumn("updated (UTC)"),
        })
    st.caption("Select a row, or pick an experiment in the sidebar, to open it. "
               "Compare several on the Compare page.")
    selected = event.selection.rows if event is not None else []
    if selected:
        st.switch_page(_ui.EXPERIMENT_PAGE,
                       query_params={_ui.QUERY_PARAM: str(df.iloc[selected[0]]["name"])})
