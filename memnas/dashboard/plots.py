"""Plotly figures of the dashboard, drawn from the data of `memnas.dashboard.data`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memnas.dashboard.data import ParetoInfo

if TYPE_CHECKING:
    from memnas.dashboard.architecture import Diagram
    import pandas as pd
    import plotly.graph_objects as go

ALL_COLOR = "rgba(120, 120, 140, 0.35)"
FRONT_COLOR = "#d62728"
BEST_COLOR = "#1f77b4"


RUNG_COLORS = ("#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#8c2d04")
"""Marker colours of a multi-fidelity experiment's budgets, lowest first (light to dark)."""
OVER = ("number", "finished_at", "spent")
"""What the x axis of a curve over the search can be: trial number, finish time, budget spent."""


def _arrow(direction: str) -> str:
    return "↑ max" if direction == "max" else "↓ min"


def over_title(over: str, unit: str | None = None) -> str:
    """The x axis title of a curve drawn over ``over`` (one of `OVER`)."""
    if over not in OVER:
        raise ValueError(f"over must be one of {', '.join(OVER)}, got {over!r}")
    return {"number": "trial number", "finished_at": "finish time (UTC)",
            "spent": f"{unit or 'budget'} spent (all trials)"}[over]


def _budget_text(budget: object, unit: str | None) -> str:
    text = f"{budget:g}" if isinstance(budget, float) else str(budget)
    return f"{unit} = {text}" if unit else f"budget {text}"


def plot_best_so_far(data: "pd.DataFrame", objective: str, direction: str,
                     over: str = "number", max_points: int = 1500,
                     unit: str | None = None) -> "go.Figure":
    """Every finished trial's value and the running best, over trial number, time or
    budget spent.

    Args:
      data: `memnas.dashboard.data.best_so_far` of ``objective``.
      objective: the value's name (axis and title).
      direction: "max" or "min" (named in the title).
      over: "number" (trial number), "finished_at" (finish time) or "spent" (budget
        spent by all trials so far; needs ``data["spent"]``) on the x axis.
      max_points: trial markers drawn at most (an even sample beyond; the best-so-far
        line always uses every trial).
      unit: the budget's name (e.g. "steps") in labels.

    Returns:
      A figure with a faded marker trace ("trials"), or for a multi-fidelity experiment
      (``data["budget"]``) one marker trace per budget coloured from light (lowest) to
      dark, and a step line ("best so far").
    """
    import plotly.graph_objects as go

    title = over_title(over, unit)
    if over not in data.columns:
        raise ValueError(f"cannot draw over {over!r}: the data has no such column")
    data = data.sort_values(over, kind="stable") if over != "number" else data
    if over != "number":
        best = data["value"].cummax() if direction == "max" else data["value"].cummin()
        data = data.assign(best=best.to_numpy())
    fig = go.Figure()
    markers = data.iloc[::-(-len(data) // max_points)] if len(data) > max_points else data
    size = 5 if len(markers) > 500 else 7
    for name, part, color in _rungs(markers, unit):
        fig.add_trace(go.Scatter(  # SVG: a few thousand markers draw faster than WebGL
            x=part[over], y=part["value"], mode="markers", name=name,
            marker={"color": color, "size": size}, customdata=part["number"],
            hovertemplate=f"trial %{{customdata}}{'' if name == 'trials' else ' · ' + name}"
                          f"<br>{objective} = %{{y:.6g}}<extra></extra>"))
    steps = data[data["best"].ne(data["best"].shift())] if len(data) else data
    steps = steps if not len(data) else _with_last(steps, data)
    fig.add_trace(go.Scatter(
        x=steps[over], y=steps["best"], mode="lines", name="best so far",
        line={"color": BEST_COLOR, "width": 2, "shape": "hv"},
        customdata=steps["number"],
        hovertemplate="after trial %{customdata}<br>best = %{y:.6g}<extra></extra>"))
    fig.update_layout(
        title={"text": f"Best {objective} so far ({_arrow(direction)})"},
        xaxis_title=title, yaxis_title=objective,
        margin={"l": 10, "r": 10, "t": 50, "b": 10}, height=340,
        legend={"orientation": "h", "y": -0.2})
    return fig


def _rungs(markers: "pd.DataFrame", unit: str | None) -> list[tuple[str, "pd.DataFrame", str]]:
    """The marker traces of `plot_best_so_far`: (name, rows, colour) per budget, lowest
    first, when the rows have budgets (at most ``len(RUNG_COLORS)``); else all rows."""
    if "budget" not in markers.columns or not markers["budget"].notna().any():
        return [("trials", markers, ALL_COLOR)]
    budgets = markers["budget"]
    values = list(dict.fromkeys(budgets.dropna()))
    if len(values) > len(RUNG_COLORS):
        return [("trials", markers, ALL_COLOR)]
    values.sort(key=lambda b: (0, b, "") if isinstance(b, float) else (1, 0, str(b)))
    last = len(RUNG_COLORS) - 1
    out = [(_budget_text(b, unit), markers[budgets == b],
            RUNG_COLORS[round(i * last / max(len(values) - 1, 1)) if len(values) > 1 else 3])
           for i, b in enumerate(values)]
    if budgets.isna().any():
        out.insert(0, ("no budget", markers[budgets.isna()], ALL_COLOR))
    return out


def _with_last(steps: "pd.DataFrame", data: "pd.DataFrame") -> "pd.DataFrame":
    """The improvement rows plus the last row, so the step line reaches the end."""
    import pandas as pd

    if steps.index[-1] == data.index[-1]:
        return steps
    return pd.concat([steps, data.iloc[[-1]]])


def plot_pareto(info: ParetoInfo, color: str | None = None) -> "go.Figure":
    """Finished trials on two values, the non-dominated ones highlighted and joined.

    The front is drawn as the staircase that bounds the region it dominates.

    Beyond 1000 points the dominated ones are WebGL markers (``Scattergl``) so that
    thousands stay fluid; each point carries its trial number as ``customdata`` (what a
    click selects).

    Args:
      info: `memnas.dashboard.data.pareto_info` of the two values.
      color: name of the third value in ``info.points["color"]`` (None: no colour).

    Returns:
      A figure with traces "trials" (faded or coloured, off the front), "Pareto
      front" (markers) and "front" (the step line).
    """
    import plotly.graph_objects as go

    pts, front = info.points, info.front
    rest = pts[~pts["on_front"]]
    marker: dict = {"color": ALL_COLOR, "size": 7}
    if color is not None and "color" in rest.columns and rest["color"].notna().any():
        marker = {"color": rest["color"], "colorscale": "Viridis", "size": 7, "opacity": 0.7,
                  "colorbar": {"title": {"text": color}, "thickness": 12}}
    fig = go.Figure()
    extra = "" if "color" not in marker or isinstance(marker["color"], str) else \
        f"<br>{color} = %{{marker.color:.6g}}"
    scatter = go.Scattergl if len(rest) > 1000 else go.Scatter  # WebGL only where it pays
    fig.add_trace(scatter(
        x=rest["x"], y=rest["y"], mode="markers", name="trials", marker=marker,
        customdata=rest["number"].to_numpy(), text=rest["summary"].tolist(),
        hovertemplate=(f"<b>trial %{{customdata}}</b><br>%{{text}}<br>{info.x} = %{{x:.6g}}"
                       f"<br>{info.y} = %{{y:.6g}}{extra}<extra></extra>")))
    # A minimised x dominates to its right: walk horizontally first, then vertically.
    shape = "hv" if info.x_direction == "min" else "vh"
    fig.add_trace(go.Scatter(
        x=front["x"], y=front["y"], mode="lines", name="front",
        line={"color": FRONT_COLOR, "width": 1.5, "shape": shape, "dash": "dot"},
        hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(
        x=front["x"], y=front["y"], mode="markers", name="Pareto front",
        marker={"color": FRONT_COLOR, "size": 11, "line": {"color": "white", "width": 1}},
        customdata=front["number"], text=front["hover"],
        hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(
        title={"text": f"Pareto front: {info.x} ({_arrow(info.x_direction)}) vs "
                       f"{info.y} ({_arrow(info.y_direction)})"},
        xaxis_title=f"{info.x} ({_arrow(info.x_direction)})",
        yaxis_title=f"{info.y} ({_arrow(info.y_direction)})",
        margin={"l": 10, "r": 10, "t": 50, "b": 10}, height=460,
        legend={"orientation": "h", "y": -0.15}, hoverlabel={"align": "left"})
    return fig


def plot_curve(data: "pd.DataFrame", title: str = "") -> "go.Figure":
    """A trial's intermediate values (``step``, ``name``, ``value``), one line per name.

    Args:
      data: `memnas.dashboard.data.curve_frame` of a trial.
      title: figure title.

    Returns:
      A figure with one "lines+markers" trace per curve name.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, part in data.groupby("name", sort=True):
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines+markers",
                                 name=str(name)))
    fig.update_layout(title={"text": title}, xaxis_title="step",
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, height=320)
    return fig


def plot_hypervolume(data: "pd.DataFrame", x: str, y: str, over: str = "number",
                     unit: str | None = None) -> "go.Figure":
    """Hypervolume of the front of ``x`` and ``y`` as the search went on.

    Args:
      data: `memnas.dashboard.analysis.hypervolume_over_time`.
      x: first value's name (title).
      y: second value's name (title).
      over: "number", "finished_at" or "spent" (needs ``data["spent"]``) on the x axis.
      unit: the budget's name (e.g. "steps") in the axis title.
    """
    import plotly.graph_objects as go

    title = over_title(over, unit)
    fig = go.Figure(go.Scatter(
        x=data[over], y=data["hypervolume"], mode="lines", line={"shape": "hv",
                                                                   "color": BEST_COLOR},
        customdata=data["number"], name="hypervolume",
        hovertemplate="after trial %{customdata}<br>hypervolume = %{y:.6g}<extra></extra>"))
    fig.update_layout(title={"text": f"Hypervolume of {x} vs {y}"},
                      xaxis_title=title, yaxis_title="hypervolume", height=320,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def plot_decision_box(stats: "pd.DataFrame", decision: str, value: str) -> "go.Figure":
    """Box per choice of a decision from precomputed quartiles (`analysis.decision_stats`)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Box(
        x=stats["choice"], q1=stats["q1"], median=stats["median"], q3=stats["q3"],
        lowerfence=stats["min"], upperfence=stats["max"], mean=stats["mean"],
        name=value, marker={"color": BEST_COLOR}, boxpoints=False))
    fig.update_layout(title={"text": f"{value} by {decision}"}, xaxis_title=decision,
                      yaxis_title=value, height=360, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      xaxis={"type": "category"})
    return fig


def plot_parallel(frame: "pd.DataFrame", value: str, names: list[str]) -> "go.Figure":
    """Parallel coordinates of decisions (category codes) and ``value`` (the colour)."""
    import plotly.graph_objects as go

    labels = frame.attrs.get("labels", {})
    dims = [{"label": n if len(n) < 28 else "…" + n[-27:], "values": frame[n],
             "tickvals": list(range(len(labels.get(n, [])))),
             "ticktext": [t[:14] for t in labels.get(n, [])]} for n in names]
    dims.append({"label": value, "values": frame[value]})
    fig = go.Figure(go.Parcoords(line={"color": frame[value], "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(title={"text": f"Decisions against {value} ({len(frame)} trials)"},
                      height=420, margin={"l": 60, "r": 40, "t": 80, "b": 20})
    return fig


def plot_compare_best(series: "dict[str, pd.DataFrame]", objective: str,
                      direction: str) -> "go.Figure":
    """Best-so-far step lines of several experiments over trial number."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, data in series.items():
        fig.add_trace(go.Scatter(x=data["number"], y=data["best"], mode="lines", name=name,
                                 line={"shape": "hv", "width": 2}))
    fig.update_layout(title={"text": f"Best {objective} so far ({_arrow(direction)})"},
                      xaxis_title="trial number", yaxis_title=objective, height=380,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def plot_compare_fronts(infos: "dict[str, ParetoInfo]") -> "go.Figure":
    """The Pareto fronts of several experiments on the same two values."""
    import plotly.graph_objects as go

    fig = go.Figure()
    first = next(iter(infos.values()))
    shape = "hv" if first.x_direction == "min" else "vh"
    for name, info in infos.items():
        fig.add_trace(go.Scatter(
            x=info.front["x"], y=info.front["y"], mode="lines+markers", name=name,
            line={"shape": shape, "width": 1.5}, text=info.front["hover"],
            hovertemplate="%{text}<extra>" + name + "</extra>"))
    fig.update_layout(
        title={"text": f"Pareto fronts: {first.x} ({_arrow(first.x_direction)}) vs "
                       f"{first.y} ({_arrow(first.y_direction)})"},
        xaxis_title=first.x, yaxis_title=first.y, height=460,
        margin={"l": 10, "r": 10, "t": 50, "b": 10}, hoverlabel={"align": "left"})
    return fig


def plot_diagram(diagram: "Diagram") -> "go.Figure":
    """Boxes and arrows of `memnas.dashboard.architecture.diagram`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if diagram.kind == "sequence":
        pos = [(0.0, -float(i)) for i in range(len(diagram.boxes))]
    else:
        leaves: dict[int, float] = {}
        children: dict[int, list[int]] = {}
        for a, b in diagram.edges:
            children.setdefault(a, []).append(b)
        counter = [0.0]

        def place(i: int) -> float:
            if not children.get(i):
                leaves[i] = counter[0]
                counter[0] += 1.0
                return leaves[i]
            xs = [place(c) for c in children[i]]
            leaves[i] = sum(xs) / len(xs)
            return leaves[i]

        if diagram.boxes:
            place(0)
        pos = [(leaves.get(i, 0.0), -float(d)) for i, d in enumerate(diagram.depth)]
    colors = {"io": "#e8eef7", "block": "#fdf1e1", "node": "#eef5ea"}
    for a, b in diagram.edges:
        fig.add_annotation(x=pos[b][0], y=pos[b][1] + 0.3, ax=pos[a][0], ay=pos[a][1] - 0.3,
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=2, arrowwidth=1.2, arrowcolor="#888", text="")
    for (x, y), box in zip(pos, diagram.boxes):
        lines = list(box.lines[:6]) + (["…"] if len(box.lines) > 6 else [])
        text = f"<b>{box.title}</b>" + "".join(f"<br>{ln[:60]}" for ln in lines)
        fig.add_annotation(x=x, y=y, text=text, showarrow=False, align="center",
                           bgcolor=colors.get(box.kind, "#eee"), bordercolor="#666",
                           borderwidth=1, borderpad=6, font={"size": 11})
    xs = [p[0] for p in pos] or [0.0]
    ys = [p[1] for p in pos] or [0.0]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"opacity": 0},
                             hoverinfo="skip", showlegend=False))
    fig.update_xaxes(visible=False, range=[min(xs) - 1, max(xs) + 1])
    fig.update_yaxes(visible=False, range=[min(ys) - 0.7, max(ys) + 0.7])
    fig.update_layout(title={"text": "Architecture"}, plot_bgcolor="white",
                      height=max(300, 130 * (1 - min(ys)) + 60),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig
