"""Plotly figures of the dashboard, drawn from the data of `memnas.dashboard.data`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memnas.dashboard.data import ParetoInfo

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

ALL_COLOR = "rgba(120, 120, 140, 0.35)"
FRONT_COLOR = "#d62728"
BEST_COLOR = "#1f77b4"


def _arrow(direction: str) -> str:
    return "↑ max" if direction == "max" else "↓ min"


def plot_best_so_far(data: "pd.DataFrame", objective: str, direction: str) -> "go.Figure":
    """Every finished trial's value and the running best, over trial number.

    Args:
      data: `memnas.dashboard.data.best_so_far` of ``objective``.
      objective: the value's name (axis and title).
      direction: "max" or "min" (named in the title).

    Returns:
      A figure with a faded marker trace ("trials") and a step line ("best so far").
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=data["number"], y=data["value"], mode="markers", name="trials",
        marker={"color": ALL_COLOR, "size": 7},
        hovertemplate="trial %{x}<br>" + objective + " = %{y:.6g}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=data["number"], y=data["best"], mode="lines", name="best so far",
        line={"color": BEST_COLOR, "width": 2, "shape": "hv"},
        hovertemplate="after trial %{x}<br>best = %{y:.6g}<extra></extra>"))
    fig.update_layout(
        title={"text": f"Best {objective} so far ({_arrow(direction)})"},
        xaxis_title="trial number", yaxis_title=objective,
        margin={"l": 10, "r": 10, "t": 50, "b": 10}, height=340,
        legend={"orientation": "h", "y": -0.2})
    return fig


def plot_pareto(info: ParetoInfo) -> "go.Figure":
    """Finished trials on two values, the non-dominated ones highlighted and joined.

    The front is drawn as the staircase that bounds the region it dominates.

    Args:
      info: `memnas.dashboard.data.pareto_info` of the two values.

    Returns:
      A figure with traces "trials" (faded, off the front), "Pareto front" (markers)
      and "front" (the step line).
    """
    import plotly.graph_objects as go

    pts, front = info.points, info.front
    rest = pts[~pts["on_front"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=rest["x"], y=rest["y"], mode="markers", name="trials",
        marker={"color": ALL_COLOR, "size": 8},
        text=rest["hover"], hovertemplate="%{text}<extra></extra>"))
    # A minimised x dominates to its right: walk horizontally first, then vertically.
    shape = "hv" if info.x_direction == "min" else "vh"
    fig.add_trace(go.Scatter(
        x=front["x"], y=front["y"], mode="lines", name="front",
        line={"color": FRONT_COLOR, "width": 1.5, "shape": shape, "dash": "dot"},
        hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(
        x=front["x"], y=front["y"], mode="markers", name="Pareto front",
        marker={"color": FRONT_COLOR, "size": 11, "line": {"color": "white", "width": 1}},
        text=front["hover"], hovertemplate="%{text}<extra></extra>"))
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
