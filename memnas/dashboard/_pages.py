"""Bodies of the dashboard's pages: the experiments table and one experiment's progress."""

from __future__ import annotations

from typing import Any

import streamlit as st

from memnas.dashboard import _ui, data, plots


def experiments_page() -> None:
    """The table of all experiments; selecting a row opens the experiment page."""
    st.title("Experiments")
    _ui.live(_experiments_body)


def _experiments_body() -> None:
    rows = _ui.experiments()
    if rows is None:
        return
    if not rows:
        st.info("No experiments in this store yet. Start one with `memnas run FILE` or "
                "`memnas.Experiment(...).run()` and it appears here.")
        return
    url = _ui.store_url()
    best: dict[str, float | None] = {}
    for e in rows:
        objectives = e.get("objectives") or {}
        if not objectives or not data.counts_of(e.get("counts") or {}).done:
            continue
        ok, trials = _ui.guarded(_ui.load_trials, url, e["id"])
        if not ok:
            return
        first, direction = next(iter(objectives.items()))
        best[e["name"]] = data.best_value(data.trials_frame(trials, objectives), first,
                                          direction)
    df = data.experiments_frame(rows, best)
    event = st.dataframe(
        df, hide_index=True, on_select="rerun", selection_mode="single-row",
        key="memnas_experiments_table", width="stretch",
        column_config={
            "name": st.column_config.TextColumn("name", pinned=True),
            "done": st.column_config.NumberColumn("done", help="completed or cached trials"),
            "best": st.column_config.NumberColumn("best", help="best value of the first objective"),
            "created": st.column_config.TextColumn("created (UTC)"),
            "updated": st.column_config.TextColumn("updated (UTC)"),
        })
    st.caption("Select a row, or pick an experiment in the sidebar, to open it.")
    selected = event.selection.rows if event is not None else []
    if selected:
        st.switch_page(_ui.EXPERIMENT_PAGE,
                       query_params={_ui.QUERY_PARAM: str(df.iloc[selected[0]]["name"])})


def experiment_page() -> None:
    """Progress of the experiment chosen in the sidebar (or by ``?experiment=NAME``)."""
    rows = _ui.experiments()
    if rows is None:
        return
    by_name = {e["name"]: e for e in rows}
    wanted = st.query_params.get(_ui.QUERY_PARAM)
    if wanted is not None and wanted not in by_name:
        listed = ", ".join(repr(n) for n in list(by_name)[:10]) or "none"
        st.error(f"no experiment named {wanted!r} in the store (found: {listed})")
        return
    name = _ui.selected_experiment()
    if name is None or name not in by_name:
        st.title("Experiment")
        st.info("No experiments in this store yet.")
        return
    if wanted != name:
        st.query_params[_ui.QUERY_PARAM] = name  # the URL names what is shown
    st.title(name)
    exp_id = by_name[name]["id"]
    _ui.live(lambda: _experiment_body(name, exp_id))


def _experiment_body(name: str, exp_id: int) -> None:
    url = _ui.store_url()
    rows = _ui.experiments()
    exp = next((e for e in rows or [] if e["id"] == exp_id), None)
    if exp is None:
        if rows is not None:
            st.error(f"experiment {name!r} is no longer in the store")
        return
    objectives: dict[str, str] = dict(exp.get("objectives") or {})
    st.caption(" · ".join([
        f"status **{exp.get('status', '')}**",
        f"algorithm `{data.algorithm_label(exp.get('algorithm'))}`",
        f"objectives {data.objectives_label(objectives)}",
        f"created {data.format_time(exp.get('created_at'))} UTC",
        f"updated {data.format_time(exp.get('updated_at'))} UTC"]))
    ok, trials = _ui.guarded(_ui.load_trials, url, exp_id)
    if not ok:
        return
    df = data.trials_frame(trials, objectives)
    counts = data.counts_of(exp.get("counts") or {})
    _counts_row(counts, df, objectives)
    ok, cache = _ui.guarded(_ui.load_cache_counters, url, exp_id)
    if ok:
        st.caption(data.cache_label(cache))
    if not (df["status"].isin(data.DONE_STATUSES)).any():
        st.info("No completed trials yet: charts appear when the first trial finishes.")
    else:
        _best_so_far_section(df, objectives)
        _pareto_section(df, trials, objectives, exp_id)
    _trials_section(df, trials, exp_id)


def _counts_row(counts: data.Counts, df: Any, objectives: dict[str, str]) -> None:
    cols = st.columns(6 + min(len(objectives), 2))
    for col, (label, value) in zip(cols, [
            ("trials", counts.total), ("completed", counts.completed), ("cached", counts.cached),
            ("failed", counts.failed), ("running", counts.running), ("pending", counts.pending)]):
        col.metric(label, value)
    for col, (obj, direction) in zip(cols[6:], objectives.items()):
        best = data.best_value(df, obj, direction)
        col.metric(f"best {obj} ({direction})", "–" if best is None else f"{best:.4g}")


def _best_so_far_section(df: Any, objectives: dict[str, str]) -> None:
    items = list(objectives.items())
    if not items:
        return
    st.subheader("Best so far")
    cols = st.columns(min(len(items), 2))
    for i, (obj, direction) in enumerate(items):
        with cols[i % len(cols)]:
            series = data.best_so_far(df, obj, direction)
            if series.empty:
                st.info(f"No finished trial reported {obj!r} yet.")
            else:
                st.plotly_chart(plots.plot_best_so_far(series, obj, direction),
                                key=f"memnas_best_{obj}", width="stretch")


def _pareto_section(df: Any, trials: list[dict[str, Any]], objectives: dict[str, str],
                    exp_id: int) -> None:
    st.subheader("Pareto front")
    if len(objectives) < 2:
        st.info(f"Single-objective experiment ({data.objectives_label(objectives)}): "
                "there is no Pareto front to show.")
        return
    names = data.value_names(trials, objectives)
    costs = data.cost_names(trials)
    directions = {n: data.direction_of(n, objectives, costs) for n in names}
    label = lambda n: f"{n} ({directions[n]})"  # noqa: E731
    c1, c2 = st.columns(2)
    x = c1.selectbox("x axis", names, index=0, format_func=label,
                     key=f"memnas_pareto_x_{exp_id}")
    y = c2.selectbox("y axis", names, index=1, format_func=label,
                     key=f"memnas_pareto_y_{exp_id}")
    if x == y:
        st.warning("Choose two different values for the axes.")
        return
    info = data.pareto_info(df, x, y, directions, hover_names=names)
    if info.points.empty:
        st.info(f"No finished trial has both {x!r} and {y!r}.")
        return
    st.plotly_chart(plots.plot_pareto(info), key="memnas_pareto", width="stretch")
    st.caption(f"{len(info.front)} of {len(info.points)} finished trials are on the front.")


def _trials_section(df: Any, trials: list[dict[str, Any]], exp_id: int) -> None:
    st.subheader("Trials")
    if df.empty:
        st.info("No trials yet.")
        return
    st.dataframe(
        df, hide_index=True, width="stretch", key="memnas_trials_table",
        column_config={
            "number": st.column_config.NumberColumn("#", pinned=True),
            "summary": st.column_config.TextColumn("summary", width="large"),
            "wall_time": st.column_config.NumberColumn("wall time (s)", format="%.2f"),
            "started_at": st.column_config.DatetimeColumn("started (UTC)"),
            "finished_at": st.column_config.DatetimeColumn("finished (UTC)"),
            "error": st.column_config.TextColumn("error", width="medium"),
        })
    with st.expander("Trial details"):
        by_number = {int(t["number"]): t for t in trials}
        number = st.selectbox("Trial", sorted(by_number), key=f"memnas_trial_{exp_id}")
        if number is None:
            return
        t = by_number[number]
        st.markdown(f"**Trial {number}** · status **{t['status']}** · attempt {t.get('attempt')}"
                    + (f" · cached from trial {t['cached_from']}" if t.get("cached_from")
                       is not None else ""))
        st.code(t.get("summary") or "", language=None, wrap_lines=True)
        c1, c2, c3 = st.columns(3)
        c1.caption("decisions")
        c1.json(t.get("decisions") or {})
        c2.caption("metrics")
        c2.json(t.get("metrics") or {})
        c3.caption("costs")
        c3.json(t.get("costs") or {})
        if t.get("error"):
            st.caption("error")
            st.code(t["error"], language=None)
        ok, points = _ui.guarded(_ui.load_curve, _ui.store_url(), t["id"])
        if ok and points:
            st.plotly_chart(plots.plot_curve(data.curve_frame(points), f"trial {number} curve"),
                            key="memnas_curve", width="stretch")
