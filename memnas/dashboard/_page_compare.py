"""The Compare page: several experiments' best-so-far curves and Pareto fronts overlaid."""

from __future__ import annotations

import streamlit as st

from memnas.dashboard import _ui, data, plots


def compare_page() -> None:
    """Overlays the experiments picked here (default: the newest two sharing objectives)."""
    st.title("Compare experiments")
    rows = _ui.experiments()
    if rows is None:
        return
    if not rows:
        st.info("No experiments in this store yet.")
        return
    names = [e["name"] for e in rows]
    first = rows[0].get("objectives") or {}
    default = [e["name"] for e in rows if set(e.get("objectives") or {}) & set(first)][:3]
    picked = st.multiselect("Experiments", names, default=default, key="memnas_compare")
    if not picked:
        st.info("Pick experiments to compare.")
        return
    _ui.live(lambda: _body(rows, picked))


def _body(rows: list[dict], picked: list[str]) -> None:
    url = _ui.store_url()
    by_name = {e["name"]: e for e in rows}
    frames = {}
    for name in picked:
        exp = by_name[name]
        ok, df = _ui.guarded(_ui.load_frame, url, exp["id"], dict(exp.get("objectives") or {}))
        if not ok:
            return
        frames[name] = df
    objectives: dict[str, str] = {}
    for name in picked:
        for k, d in (by_name[name].get("objectives") or {}).items():
            objectives.setdefault(k, d)
    st.dataframe([{"experiment": n,
                   "algorithm": data.algorithm_label(by_name[n].get("algorithm")),
                   "trials": len(frames[n]),
                   **{f"best {k}": data.best_value(frames[n], k, d)
                      for k, d in objectives.items()}} for n in picked],
                 hide_index=True, width="stretch", key="memnas_compare_table")
    if not objectives:
        return
    obj = st.selectbox("Objective", list(objectives), key="memnas_compare_obj")
    series = {n: data.best_so_far(df, obj, objectives[obj]) for n, df in frames.items()
              if obj in df.columns}
    series = {n: s for n, s in series.items() if not s.empty}
    if series:
        st.plotly_chart(plots.plot_compare_best(series, obj, objectives[obj]),
                        key="memnas_compare_best", width="stretch")
    else:
        st.info(f"No picked experiment has a finished trial with {obj!r}.")
    if len(objectives) < 2:
        return
    c1, c2 = st.columns(2)
    x = c1.selectbox("x axis", list(objectives), index=0, key="memnas_compare_x")
    y = c2.selectbox("y axis", list(objectives), index=1, key="memnas_compare_y")
    if x == y:
        st.warning("Choose two different values for the axes.")
        return
    infos = {n: data.pareto_info(df, x, y, objectives, hover_names=[x, y])
             for n, df in frames.items() if x in df.columns and y in df.columns}
    infos = {n: i for n, i in infos.items() if len(i.front)}
    if infos:
        st.plotly_chart(plots.plot_compare_fronts(infos), key="memnas_compare_fronts",
                        width="stretch")
    else:
        st.info(f"No picked experiment has finished trials with both {x!r} and {y!r}.")
