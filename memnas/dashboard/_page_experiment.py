"""The Experiment page: progress, Pareto front, trials, and on demand best so far,
hypervolume and decisions.

The first view is the counts, the Pareto front and the trials table; the other analyses
are one click away (``Show`` pills, or ``?show=best,hypervolume,decisions`` in the URL), so
that the browser has one chart to draw before the page is usable.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from memnas.dashboard import _ui, analysis, data, plots
from memnas.records import WITH_RESULT
from memnas.store import cachekinds
from memnas.store.liveness import shown_status
from memnas.dashboard._trials_table import trials_section as _trials_section

MAX_SCATTER = 4000
"""Points drawn in a Pareto scatter: the whole front plus a sample of dominated trials."""
BOX_ROWS = 20000
"""Trials whose decisions feed the box plots (every k-th trial beyond that)."""
PARALLEL_ROWS = 3000
"""Trials drawn in the parallel-coordinates plot (every k-th trial beyond that)."""
ANALYSES = {"best": "Best so far", "hypervolume": "Hypervolume over time",
            "decisions": "Decisions against metrics"}
"""The analyses shown on demand below the Pareto front, by their name in ``?show=``."""
SHOW_PARAM = "show"
SHOW_KEY = "memnas_show"
KEPT_KEY = "memnas_show_kept"


def current_experiment() -> dict[str, Any] | None:
    """The experiment named by ``?experiment=`` or the sidebar; None after saying why."""
    rows = _ui.experiments()
    if rows is None:
        return None
    by_name = {e["name"]: e for e in rows}
    wanted = st.query_params.get(_ui.QUERY_PARAM)
    if wanted is not None and wanted not in by_name:
        listed = ", ".join(repr(n) for n in list(by_name)[:10]) or "none"
        st.error(f"no experiment named {wanted!r} in the store (found: {listed})")
        return None
    name = _ui.selected_experiment()
    if name is None or name not in by_name:
        st.info("No experiments in this store yet.")
        return None
    if wanted != name:
        st.query_params[_ui.QUERY_PARAM] = name  # the URL names what is shown
    return by_name[name]


def experiment_page() -> None:
    """Progress of the experiment chosen in the sidebar (or by ``?experiment=NAME``)."""
    exp = current_experiment()
    if exp is None:
        st.title("Experiment")
        return
    st.title(exp["name"])
    _ui.live(lambda: _body(exp["name"], exp["id"]))


def _body(name: str, exp_id: int) -> None:
    url = _ui.store_url()
    rows = _ui.experiments()
    exp = next((e for e in rows or [] if e["id"] == exp_id), None)
    if exp is None:
        if rows is not None:
            st.error(f"experiment {name!r} is no longer in the store")
        return
    objectives: dict[str, str] = dict(exp.get("objectives") or {})
    st.caption(" · ".join([
        f"status **{shown_status(exp)}**",
        f"algorithm `{data.algorithm_label(exp.get('algorithm'))}`",
        f"objectives {data.objectives_label(objectives)}",
        f"created {data.format_time(exp.get('created_at'))} UTC",
        f"updated {data.format_time(exp.get('updated_at'))} UTC"]))
    ok, df = _ui.guarded(_ui.load_frame, url, exp_id, objectives)
    if not ok:
        return
    counts = data.counts_of(exp.get("counts") or {})
    ok, cache = _ui.guarded(_ui.load_cache_counters, url, exp_id)
    best = {o: _ui.derived(url, exp_id, objectives, "best", o, d) for o, d in objectives.items()}
    _counts_row(counts, best, objectives, cache if ok else None)
    if ok:
        st.caption(data.cache_label(cache))
        _kinds_caption(url, exp_id)
    done = bool(df["status"].isin(WITH_RESULT).any())
    axes = None
    if not done:
        st.info("No completed trials yet: charts appear when the first trial finishes.")
    else:
        axes = _pareto_section(df, objectives, exp_id, name, url)
        _analyses(df, objectives, exp_id, url, axes)
    _trials_section(df, exp_id, name, url)


def value_names(df: Any, objectives: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The values a trial can be charted by (objectives first) and their directions."""
    directions = data.value_directions(df, objectives)
    return list(directions), directions


def warm(url: str, exp: dict[str, Any]) -> None:
    """Computes, into the server's caches, what the page shows of ``exp`` by default:
    its trials frame, cache counters, best values, the default Pareto front, its
    hypervolume and the first decision's values, and builds the Pareto figure once
    (Plotly's first figure in a process is slow)."""
    exp_id = exp["id"]
    objectives: dict[str, str] = dict(exp.get("objectives") or {})
    df = _ui.load_frame(url, exp_id, objectives)
    _ui.load_cache_counters(url, exp_id)
    for o, d in objectives.items():
        _ui.derived(url, exp_id, objectives, "best", o, d)
    if not df["status"].isin(WITH_RESULT).any():
        return
    keys = _ui.load_decision_keys(url, exp_id)
    if keys:
        _ui.load_decisions(url, exp_id, keys[:1], max(1, len(df) // BOX_ROWS))
    if len(objectives) < 2:
        return
    names, directions = value_names(df, objectives)
    x, y = names[0], names[1]
    info = _ui.derived(url, exp_id, objectives, "pareto", x, y, directions, tuple(names),
                       None, MAX_SCATTER)
    _ui.derived(url, exp_id, objectives, "hypervolume", x, y, directions)
    if not info.points.empty:
        plots.plot_pareto(info).to_json()


def _counts_row(counts: data.Counts, best: dict[str, Any], objectives: dict[str, str],
                cache: dict[str, float] | None) -> None:
    rate = analysis.cache_rate(cache) if cache else None
    shown = [("trials", counts.total), ("completed", counts.completed), ("cached", counts.cached),
             ("failed", counts.failed), ("running", counts.running), ("pending", counts.pending),
             ("cache hit rate", "–" if rate is None else f"{100 * rate:.0f}%")]
    if counts.infeasible:  # a constrained experiment: trials never trained
        shown.insert(4, ("infeasible", counts.infeasible))
    cols = st.columns(len(shown))
    for col, (label, value) in zip(cols, shown):
        col.metric(label, f"{value:,}" if isinstance(value, int) else value)
    if not objectives:
        return
    cols = st.columns(max(len(objectives), 4))
    for col, (obj, direction) in zip(cols, objectives.items()):
        series = best[obj]  # `data.best_so_far`: its last row holds the best value
        value = None if series.empty else float(series["best"].iloc[-1])
        col.metric(f"best {obj} ({direction})", "–" if value is None else f"{value:.4g}")


@st.cache_data(ttl=_ui.FRAME_TTL_S, max_entries=40, show_spinner=False)
def _kind_counts(url: str, exp_id: int, stamp: tuple) -> dict[str, dict[str, int]]:
    return cachekinds.cache_kind_counts(_ui.get_store(url), exp_id)


def _load_kinds(url: str, exp_id: int) -> dict[str, dict[str, int]]:
    """`memnas.store.cachekinds.cache_kind_counts`, reread only when the trials change."""
    return _kind_counts(url, exp_id, _ui.load_stamp(url, exp_id))


def _kinds_caption(url: str, exp_id: int) -> None:
    """Cached trials by kind (hits and attached together): duplicate, canonical, functional."""
    ok, kinds = _ui.guarded(_load_kinds, url, exp_id)
    if not ok:
        return
    total = {k: kinds["hit"].get(k, 0) + kinds["attached"].get(k, 0)
             for k in {**kinds["hit"], **kinds["attached"]}}
    if any(total.values()):
        st.caption("Cached trials by kind: " + ", ".join(
            f"{n} {k} ({cachekinds.KIND_NOTES[k]})" for k, n in total.items() if n or k != "unknown"))


OVER_CHOICES = {"budget spent": "spent", "trial number": "number", "time": "finished_at"}
"""The x axes of the curves over the search (budget spent: multi-fidelity experiments only)."""


def _over(exp_id: int, df: Any) -> str:
    """The chosen x axis of the curves: a multi-fidelity experiment's start at the budget
    its trials spent (rungs cost unequal budgets), the others' at the trial number."""
    choices = list(OVER_CHOICES)[0 if data.has_budgets(df) else 1:]
    choice = st.radio("x axis", choices, horizontal=True, key=f"memnas_over_{exp_id}",
                      label_visibility="collapsed")
    return OVER_CHOICES.get(choice, "number")


def _best_so_far_section(df: Any, objectives: dict[str, str], exp_id: int,
                         url: str, over: str) -> None:
    items = list(objectives.items())
    st.subheader("Best so far")
    if not items:
        st.info("The experiment names no objectives.")
        return
    cols = st.columns(min(len(items), 2))
    for i, (obj, direction) in enumerate(items):
        with cols[i % len(cols)]:
            series = _ui.derived(url, exp_id, objectives, "best", obj, direction)
            if series.empty:
                st.info(f"No finished trial reported {obj!r} yet.")
            else:
                unit = df.attrs.get("budget_unit")
                st.plotly_chart(plots.plot_best_so_far(series, obj, direction, over=over,
                                                       unit=unit),
                                key=f"memnas_best_{obj}", width="stretch")
    if data.has_budgets(df):
        st.caption("Trials are coloured by their budget: a low rung's value is not a "
                   "full training's. Infeasible trials and trials that broke a constraint "
                   "are never the best.")


def _pareto_section(df: Any, objectives: dict[str, str], exp_id: int, name: str,
                    url: str) -> tuple[str, str, dict[str, str]] | None:
    """The Pareto chart; returns its axes and the values' directions (None without one)."""
    st.subheader("Pareto front")
    if len(objectives) < 2:
        st.info(f"Single-objective experiment ({data.objectives_label(objectives)}): "
                "there is no Pareto front to show.")
        return None
    names, directions = value_names(df, objectives)
    label = lambda n: f"{n} ({directions[n]})"  # noqa: E731
    c1, c2, c3 = st.columns(3)
    x = c1.selectbox("x axis", names, index=0, format_func=label,
                     key=f"memnas_pareto_x_{exp_id}")
    y = c2.selectbox("y axis", names, index=1, format_func=label,
                     key=f"memnas_pareto_y_{exp_id}")
    color = c3.selectbox("colour", ["(none)", *names], index=0,
                         key=f"memnas_pareto_c_{exp_id}")
    color = None if color == "(none)" else color
    if x == y:
        st.warning("Choose two different values for the axes.")
        return None
    info = _ui.derived(url, exp_id, objectives, "pareto", x, y, directions, tuple(names),
                       color, MAX_SCATTER)
    if info.points.empty:
        st.info(f"No finished trial has both {x!r} and {y!r}.")
        return x, y, directions
    event = st.plotly_chart(plots.plot_pareto(info, color=color), key="memnas_pareto",
                            width="stretch", on_select="rerun", selection_mode="points")
    total = info.points.attrs.get("total", len(info.points))
    folded = info.points.attrs.get("folded", 0)
    shown = "" if total == len(info.points) else \
        f" Showing all front points and {len(info.points) - len(info.front)} of " \
        f"{total - len(info.front)} dominated ones (uniform sample)."
    twins = f" ({folded} cached twins drawn as the trial they reused.)" if folded else ""
    st.caption(f"{len(info.front)} of {total} finished architectures are on the front."
               f"{twins}{shown} Click a point to select its trial.")
    picked = _picked_numbers(event)
    if picked:
        number = picked[0]
        row = df[df["number"] == number]
        if len(row):
            r = row.iloc[0]
            st.markdown(f"**Selected trial {number}** · {r['status']} · `{r['summary']}` · "
                        f"{x} = {r[x]:.6g}, {y} = {r[y]:.6g}")
            st.page_link(_ui.TRIAL_PAGE, label=f"Open trial {number}",
                         icon=":material/account_tree:",
                         query_params={_ui.QUERY_PARAM: name, _ui.TRIAL_PARAM: str(number)})
    return x, y, directions


def _kept_analyses() -> None:
    chosen = list(st.session_state.get(SHOW_KEY) or [])
    st.session_state[KEPT_KEY] = chosen  # survives visits to other pages
    if chosen:
        st.query_params[SHOW_PARAM] = ",".join(chosen)
    else:
        st.query_params.pop(SHOW_PARAM, None)


def shown_analyses(default: list[str]) -> list[str]:
    """The ``Show`` pills: the analyses picked (``?show=`` names them, ``all`` for every
    one; else the visitor's last choice, else ``default``)."""
    wanted = st.query_params.get(SHOW_PARAM)
    if wanted is not None:
        parts = [p.strip() for p in wanted.split(",")]
        st.session_state[SHOW_KEY] = list(ANALYSES) if "all" in parts else \
            [p for p in ANALYSES if p in parts]
    elif SHOW_KEY not in st.session_state:
        kept = st.session_state.get(KEPT_KEY)
        st.session_state[SHOW_KEY] = list(default if kept is None else kept)
    chosen = st.pills("Show", list(ANALYSES), format_func=ANALYSES.get, selection_mode="multi",
                      key=SHOW_KEY, on_change=_kept_analyses,
                      help="More analyses of the experiment, drawn on demand.")
    return [a for a in ANALYSES if a in (chosen or [])]


def _analyses(df: Any, objectives: dict[str, str], exp_id: int, url: str,
              axes: tuple[str, str, dict[str, str]] | None) -> None:
    # Without a Pareto front (one objective) the best-so-far curve is the page's chart.
    chosen = shown_analyses([] if len(objectives) >= 2 else ["best"])
    over = _over(exp_id, df) if {"best", "hypervolume"} & set(chosen) else "number"
    if "best" in chosen:
        _best_so_far_section(df, objectives, exp_id, url, over)
    if "hypervolume" in chosen:
        _hypervolume_section(objectives, exp_id, url, axes, over, df.attrs.get("budget_unit"))
    if "decisions" in chosen:
        _decisions_section(df, objectives, exp_id, url)


def _hypervolume_section(objectives: dict[str, str], exp_id: int, url: str,
                         axes: tuple[str, str, dict[str, str]] | None, over: str,
                         unit: str | None = None) -> None:
    st.subheader("Hypervolume over time")
    if axes is None:
        st.info("Hypervolume needs a Pareto front of two different values.")
        return
    x, y, directions = axes
    hv = _ui.derived(url, exp_id, objectives, "hypervolume", x, y, directions)
    if not len(hv):
        st.info(f"No finished trial has both {x!r} and {y!r}.")
        return
    st.plotly_chart(plots.plot_hypervolume(hv, x, y, over=over, unit=unit),
                    key="memnas_hypervolume", width="stretch")
    ref = hv.attrs["reference"]
    st.caption(f"Of the Pareto front's axes. Reference point ({x}, {y}) = "
               f"({ref[0]:.4g}, {ref[1]:.4g}): each value's worst finished value, 10% of its "
               "range beyond.")


def _picked_numbers(event: Any) -> list[int]:
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        points = (event or {}).get("selection", {}).get("points", [])
    out = []
    for p in points or []:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return out


def _decisions_section(df: Any, objectives: dict[str, str], exp_id: int, url: str) -> None:
    st.subheader("Decisions against metrics")
    ok, names = _ui.guarded(_ui.load_decision_keys, url, exp_id)
    if not ok:
        return
    if not names:
        st.info("The trials record no decisions.")
        return
    values = list(df.attrs.get("values") or [])
    c1, c2 = st.columns(2)
    decision = c1.selectbox("decision", names, key=f"memnas_dec_{exp_id}")
    value = c2.selectbox("value", values, key=f"memnas_dec_value_{exp_id}")
    every = max(1, len(df) // BOX_ROWS)
    ok, decisions = _ui.guarded(_ui.load_decisions, url, exp_id, [decision], every)
    if not ok:
        return
    stats = analysis.decision_stats(decisions, df, decision, value)
    if stats.empty:
        st.info(f"No finished trial has {value!r} and the decision {decision!r}.")
        return
    if every > 1:
        st.caption(f"Quartiles over every {every}th trial ({len(decisions)} of {len(df)}).")
    left, right = st.columns(2)
    left.plotly_chart(plots.plot_decision_box(stats, decision, value), key="memnas_dec_box",
                      width="stretch")
    if not right.toggle("Parallel coordinates", key=f"memnas_parcoords_{exp_id}",
                        help=f"Decisions of up to {PARALLEL_ROWS} trials against {value} "
                             "(WebGL: slow on machines without a GPU)."):
        return
    shown = names[:8]
    every = max(1, len(df) // PARALLEL_ROWS)
    ok, sample = _ui.guarded(_ui.load_decisions, url, exp_id, shown, every)
    if not ok:
        return
    frame = analysis.parallel_frame(sample, df, value, shown, max_rows=PARALLEL_ROWS)
    if len(frame):
        right.plotly_chart(plots.plot_parallel(frame, value, shown),
                           key="memnas_parcoords", width="stretch")
