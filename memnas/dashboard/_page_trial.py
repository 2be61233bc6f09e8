"""The Trial page: architecture diagram, memory cells, symbolic form, DNA, curves, costs, errors."""

from __future__ import annotations

from typing import Any

import streamlit as st

from memnas.dashboard import _ui, architecture, data, plots
from memnas.dashboard._page_experiment import current_experiment
from memnas.store import cachekinds
from memnas.store.rungs import VIOLATION, budget_value


def trial_page() -> None:
    """One trial of the current experiment, chosen by ``?trial=N`` or the number box."""
    exp = current_experiment()
    if exp is None:
        st.title("Trial")
        return
    url = _ui.store_url()
    ok, numbers = _ui.guarded(_ui.load_numbers, url, exp["id"])
    if not ok:
        return
    if numbers is None:
        st.title("Trial")
        st.info(f"Experiment {exp['name']!r} has no trials yet.")
        return
    lo, hi, _ = numbers
    key = f"memnas_trial_number_{exp['id']}"
    wanted = st.query_params.get(_ui.TRIAL_PARAM)
    if wanted is not None and st.session_state.get(key + "_url") != wanted:
        try:  # a link or an edited URL chose the trial: it wins over the number box once
            st.session_state[key] = min(max(int(wanted), lo), hi)
        except ValueError:
            st.error(f"trial must be a trial number, got {wanted!r}")
            return
    if key not in st.session_state:
        st.session_state[key] = lo
    number = int(st.sidebar.number_input("Trial number", min_value=lo, max_value=hi,
                                         step=1, key=key))
    st.query_params[_ui.TRIAL_PARAM] = st.session_state[key + "_url"] = str(number)
    st.title(f"{exp['name']} · trial {number}")
    st.page_link(_ui.EXPERIMENT_PAGE, label=f"Back to {exp['name']}",
                 icon=":material/arrow_back:", query_params={_ui.QUERY_PARAM: exp["name"]})
    _ui.live(lambda: _body(url, exp, number))


def _body(url: str, exp: dict[str, Any], number: int) -> None:
    ok, t = _ui.guarded(_ui.load_trial, url, exp["id"], number)
    if not ok:
        return
    if t is None:
        st.warning(f"Experiment {exp['name']!r} has no trial {number}.")
        return
    parts = [f"status **{t['status']}**", f"attempt {t.get('attempt')}",
             f"seed {t.get('seed')}"]
    if t.get("budget"):
        parts.append(f"budget **{_budget(budget_value(t['budget']))}** "
                     f"(`{_budget(t['budget'])}`)")
    if t.get("wall_time") is not None:
        parts.append(f"wall time {t['wall_time']:.2f} s")
    if t.get("node"):
        parts.append(f"node `{t['node']}`")
    parts.append(f"started {data.format_time(t.get('started_at'))} UTC")
    st.caption(" · ".join(parts))
    if t.get("summary"):
        st.code(t["summary"], language=None, wrap_lines=True)
    _cached_from(url, t)
    _promotions(exp["name"], t)
    if t.get("status") == "infeasible":
        reason = str(t.get("error") or "it broke the constraints").removeprefix("infeasible: ")
        st.warning(f"**Infeasible**, never trained: {reason}. Its costs known before "
                   "training are below; it is never a best trial nor on a Pareto front.",
                   icon=":material/block:")
    elif t.get("error"):
        st.subheader("Error")
        st.code(t["error"], language="python")
    broke = (t.get("costs") or {}).get(VIOLATION)
    if isinstance(broke, (int, float)) and broke > 0:
        st.warning(f"Broke the experiment's constraints after training (relative excess "
                   f"{broke:.4g}): never a best trial nor on a Pareto front.",
                   icon=":material/block:")
    values = {**(t.get("costs") or {}), **(t.get("metrics") or {})}
    if values:
        cols = st.columns(min(len(values), 6))
        for i, (k, v) in enumerate(values.items()):
            cols[i % len(cols)].metric(k, f"{v:.4g}" if isinstance(v, (int, float)) else str(v))
    dia = architecture.diagram(t.get("candidate") or "{}")
    st.plotly_chart(plots.plot_diagram(dia), key="memnas_arch", width="stretch")
    _cells(t.get("candidate") or "{}")
    left, right = st.columns(2)
    with left:
        st.caption("symbolic form")
        st.code(architecture.symbolic_form(t.get("candidate") or "{}"), language="python")
    with right:
        st.caption("decisions")
        st.json(t.get("decisions") or {}, expanded=True)
        st.caption("DNA")
        st.code(_dna_text(t.get("dna")), language=None, wrap_lines=True)
        c1, c2 = st.columns(2)
        c1.caption("metrics")
        c1.json(t.get("metrics") or {})
        c2.caption("costs")
        c2.json(t.get("costs") or {})
    st.subheader("Training curves")
    ok, points = _ui.guarded(_ui.load_curve, url, t["id"])
    if ok and points:
        frame = data.curve_frame(points)
        is_alpha = frame["name"].str.startswith(ALPHA_PREFIX)
        if (~is_alpha).any():
            st.plotly_chart(plots.plot_curve(frame[~is_alpha], f"trial {number} curve"),
                            key="memnas_curve", width="stretch")
        if is_alpha.any():
            _alphas(frame[is_alpha])
    elif ok:
        st.info("This trial reported no curve.")
    _artifacts(url, t["id"])


ALPHA_PREFIX = "alpha/"  # sharpDARTS reports architecture weights as alpha/<decision>/<choice>


def _alphas(frame: Any) -> None:
    """How a supernet's architecture weights evolved: one chart per decision."""
    st.subheader("Architecture weights")
    st.caption("softmax of each decision's alphas per epoch (a sharpDARTS supernet trial)")
    # Decision ids may hold "/" themselves: the choice is what follows the last one.
    parts = frame["name"].str[len(ALPHA_PREFIX):].str.rsplit("/", n=1)
    frame = frame.assign(decision=parts.str[0], name=parts.str[-1])
    for i, (decision, part) in enumerate(frame.groupby("decision", sort=True)):
        st.plotly_chart(plots.plot_curve(part, f"alphas of {decision}"),
                        key=f"memnas_alpha_{i}", width="stretch")


def _cells(candidate: str) -> None:
    """The candidate's memory cells drawn as graphs, up to three side by side."""
    graphs = architecture.cell_graphs(candidate)
    if not graphs:
        return
    st.subheader("Memory cells")
    st.caption("Each cell's graph from its input (top) to its output. Edges into attention "
               "and scans name the inputs they fill (q, k, v, gate); other operations add "
               "their inputs up (a product multiplies them). Dashed nodes and edges lie on "
               "no path from the input to the output: the cell drops them.")
    cols = st.columns(min(len(graphs), 3))
    for i, graph in enumerate(graphs):
        with cols[i % len(cols)]:
            note = "" if graph.valid else " · computes zeros (output unreachable or over " \
                "its edge cap)"
            st.caption(f"**{graph.title}**{note}")
            st.graphviz_chart(architecture.cell_dot(graph), width="stretch")


def _dna_text(dna: Any) -> str:
    if isinstance(dna, dict) and "value" in dna:
        dna = dna["value"]
    return str(dna)


def _budget(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _promotions(experiment: str, t: dict[str, Any]) -> None:
    """A multi-fidelity trial's rungs: the trial whose checkpoint it continued, and those
    that continued its own at a higher budget, each a link."""
    links = [("continues", t["parent"])] if t.get("parent") else []
    links += [("continued by", c) for c in t.get("continued_by") or ()]
    for verb, other in links:
        budget = "" if other.get("budget") is None else f" (budget {_budget(other['budget'])})"
        st.page_link(_ui.TRIAL_PAGE, label=f"{verb} trial #{other['number']}{budget}",
                     icon=":material/arrow_upward:" if verb == "continued by" else
                     ":material/arrow_downward:",
                     query_params={_ui.QUERY_PARAM: experiment,
                                   _ui.TRIAL_PARAM: str(other["number"])})


def _cached_from(url: str, t: dict[str, Any]) -> None:
    if t.get("cached_from") is None:
        return
    ok, src = _ui.guarded(_ui.load_trial, url, None, None, int(t["cached_from"]))
    if not ok:
        return
    kind = _match(url, t)
    if src is None:
        st.info(f"Result reused ({kind}) from trial id {t['cached_from']}, no longer in the "
                "store.")
        return
    saved = f", {t['saved_time']:.1f} s saved" if t.get("saved_time") else ""
    st.info(f"Result reused by the equivalence cache ({kind}{saved}) from trial "
            f"{src['number']} of {src['experiment']!r}.", icon=":material/link:")
    st.page_link(_ui.TRIAL_PAGE, label=f"Open source trial {src['number']} of "
                 f"{src['experiment']}", icon=":material/link:",
                 query_params={_ui.QUERY_PARAM: src["experiment"],
                               _ui.TRIAL_PARAM: str(src["number"])})


def _artifacts(url: str, trial_id: int) -> None:
    try:
        found = _ui.load_artifacts(url, trial_id)
    except Exception as e:  # an artifacts API still in flux must not break the page
        st.caption(f"artifacts: cannot list them ({type(e).__name__}: {e})")
        return
    if found is None:
        return
    st.subheader("Artifacts")
    if not found:
        st.caption("This trial stored no artifacts.")
        return
    rows = []
    for a in found:
        if not isinstance(a, dict):
            rows.append({"artifact": str(a)})
            continue
        row = {}
        for k, v in a.items():
            if isinstance(v, (bytes, bytearray)):
                continue
            if isinstance(v, dict):  # e.g. keys: name -> "float32[3, 4]"
                v = ", ".join(f"{n}: {d}" for n, d in v.items())
            elif k == "sha256" and isinstance(v, str):
                v = v[:12]
            row[k] = v
        rows.append(row)
    st.dataframe(rows, hide_index=True, width="stretch", key="memnas_artifacts")


def _match(url: str, t: dict[str, Any]) -> str:
    """How the cache answered a trial, e.g. ``canonical: the same canonical form`` or
    ``attached to a running twin, duplicate: the same candidate``."""
    ok, kinds = _ui.guarded(lambda u: cachekinds.cache_kinds(
        _ui.get_store(u), int(t["experiment_id"]), [int(t["id"])]), url)
    how, kind = ("attached" if t.get("cache_kind") == "attached" else "hit"), "unknown"
    if ok and int(t["id"]) in kinds:
        _, how, kind = kinds[int(t["id"])]
    text = f"{kind}: {cachekinds.KIND_NOTES[kind]}"
    return f"attached to a running twin, {text}" if how == "attached" else text
