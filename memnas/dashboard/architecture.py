"""A stored candidate as a block diagram, symbolic text and cell graphs, without importing it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Box(NamedTuple):
    """One box of the diagram: a title and the settings listed under it."""

    title: str
    lines: tuple[str, ...]
    kind: str  # "io", "block" or "node"


class Diagram(NamedTuple):
    """A candidate drawn as boxes.

    Attributes:
      kind: "sequence" (boxes in a column, each feeding the next) or "tree" (boxes
        linked to their parents by ``edges``).
      boxes: the boxes, top to bottom (sequence) or in depth-first order (tree).
      edges: (parent, child) indices into ``boxes``; for a sequence, consecutive pairs.
      depth: for a tree, each box's depth (0 for the root).
    """

    kind: str
    boxes: tuple[Box, ...]
    edges: tuple[tuple[int, int], ...]
    depth: tuple[int, ...]


def short_type(type_name: str) -> str:
    """``"memnas.searchspace.model.Block"`` -> ``"Block"``."""
    return str(type_name).rsplit(".", 1)[-1]


def parse(candidate: str | Any) -> Any:
    """The stored candidate text as JSON (a dict for symbolic objects); other text as is."""
    if not isinstance(candidate, str):
        return candidate
    try:
        return json.loads(candidate)
    except ValueError:
        return candidate


def _scalar_items(obj: dict[str, Any]) -> list[str]:
    return [f"{k}={v!r}" for k, v in obj.items()
            if k != "_type" and not isinstance(v, (dict, list))]


def _layers_key(obj: dict[str, Any]) -> str | None:
    for key in ("layers", "blocks"):
        v = obj.get(key)
        if isinstance(v, list) and v and all(isinstance(b, dict) for b in v):
            return key
    return None


def _block_box(i: int, block: dict[str, Any]) -> Box:
    lines: list[str] = []
    title = f"{i}: {short_type(block.get('_type', 'block'))}"
    for k, v in block.items():
        if k == "_type":
            continue
        if isinstance(v, dict):
            inner = ", ".join(_scalar_items(v))
            lines.append(f"{k}: {short_type(v.get('_type', 'dict'))}" +
                         (f"({inner})" if inner else ""))
        elif isinstance(v, list):
            lines.append(f"{k}: [{len(v)} items]")
        else:
            lines.append(f"{k}={v!r}")
    return Box(title, tuple(lines), "block")


def diagram(candidate: str | Any, max_nodes: int = 200) -> Diagram:
    """The diagram of a stored candidate.

    A model with a list of blocks under ``layers`` (or ``blocks``), such as memnas's
    ``SequenceModel``, becomes a column: input (its scalar settings), one box per
    block (its mixer with settings, the block's own settings), output. Anything else
    (a user's space) becomes a tree of its symbolic form: one box per object, list
    or dict, with its scalar fields, at most ``max_nodes`` boxes.
    """
    obj = parse(candidate)
    if isinstance(obj, dict):
        key = _layers_key(obj)
        if key is not None:
            boxes = [Box(f"input: {short_type(obj.get('_type', 'model'))}",
                         tuple(_scalar_items(obj)), "io")]
            boxes += [_block_box(i, b) for i, b in enumerate(obj[key])]
            boxes.append(Box("output", ("logits",), "io"))
            edges = tuple((i, i + 1) for i in range(len(boxes) - 1))
            return Diagram("sequence", tuple(boxes), edges, tuple(range(len(boxes))))
    boxes: list[Box] = []
    edges: list[tuple[int, int]] = []
    depth: list[int] = []

    def walk(label: str, value: Any, parent: int | None, d: int) -> None:
        if len(boxes) >= max_nodes:
            return
        idx = len(boxes)
        if isinstance(value, dict):
            title = f"{label}: {short_type(value['_type'])}" if "_type" in value else label
            boxes.append(Box(title, tuple(_scalar_items(value)), "node"))
            children = [(k, v) for k, v in value.items() if isinstance(v, (dict, list))]
        elif isinstance(value, list):
            boxes.append(Box(f"{label}: list[{len(value)}]",
                             tuple(f"[{i}]={v!r}" for i, v in enumerate(value)
                                   if not isinstance(v, (dict, list))), "node"))
            children = [(f"[{i}]", v) for i, v in enumerate(value) if isinstance(v, (dict, list))]
        else:
            boxes.append(Box(label, (repr(value),), "node"))
            children = []
        depth.append(d)
        if parent is not None:
            edges.append((parent, idx))
        for k, v in children:
            walk(str(k), v, idx, d + 1)

    walk("candidate", obj, None, 0)
    return Diagram("tree", tuple(boxes), tuple(edges), tuple(depth))


def symbolic_form(candidate: str | Any, indent: int = 2) -> str:
    """The candidate as PyGlove prints it (``Block(mixer=..., ...)``), from its JSON alone."""
    obj = parse(candidate)

    def fmt(v: Any, level: int) -> str:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(v, dict):
            name = short_type(v["_type"]) if "_type" in v else ""
            items = [(k, x) for k, x in v.items() if k != "_type"]
            if not items:
                return f"{name}()" if name else "{}"
            body = ",\n".join(f"{inner}{k} = {fmt(x, level + 1)}" for k, x in items)
            return f"{name}(\n{body}\n{pad})" if name else f"{{\n{body}\n{pad}}}"
        if isinstance(v, list):
            if v and v[0] == "__tuple__":
                v = v[1:]
            if not v:
                return "[]"
            body = ",\n".join(f"{inner}{i} : {fmt(x, level + 1)}" for i, x in enumerate(v))
            return f"[\n{body}\n{pad}]"
        return repr(v)

    return fmt(obj, 0)


# The ordered inputs of memory-cell operations (memnas.searchspace.cell_ops: each class's
# SLOTS), by stored type name: the dashboard reads candidates without importing them.
CELL_SLOTS: dict[str, tuple[str, ...]] = {
    "memnas.searchspace.cell_ops.LinearAttn": ("q", "k", "v"),
    "memnas.searchspace.cell_ops.Attention": ("q", "k", "v"),
    "memnas.searchspace.cell_ops.DecayedScan": ("gate", "q", "k", "v"),
    "memnas.searchspace.cell_ops.DeltaScan": ("gate", "q", "k", "v"),
}
CELL_TYPE = "memnas.searchspace.cells.Cell"


class CellGraph(NamedTuple):
    """A memory cell (``memnas.searchspace.Cell``) as a graph.

    Attributes:
      title: Where the cell sits in the candidate, e.g. ``"layer 0"``.
      nodes: Node labels: ``"input"``, each operation with its settings, ``"output"``.
      live: Per node, whether it lies on a path from the input to the output; the
        others change nothing (the cell drops them).
      edges: ``(from, to, slots, live)``: the slots the input fills at its node
        (``"q"``, ``"k,v"``; empty for operations that add or multiply their inputs).
      valid: False for a cell that outputs zeros (no path from the input to the
        output, or more live edges than its ``max_edges``).
    """

    title: str
    nodes: tuple[str, ...]
    live: tuple[bool, ...]
    edges: tuple[tuple[int, int, str, bool], ...]
    valid: bool


def cell_graphs(candidate: str | Any) -> list[CellGraph]:
    """Every memory cell in a stored candidate, in the order of its JSON."""
    found: list[CellGraph] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if value.get("_type") == CELL_TYPE:
                graph = _cell_graph(value, path)
                if graph is not None:
                    found.append(graph)
                return
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(parse(candidate), "")
    return found


def _cell_graph(cell: dict[str, Any], path: str) -> CellGraph | None:
    ops, matrix = cell.get("ops"), cell.get("matrix")
    if not isinstance(ops, list) or not isinstance(matrix, list) or \
            len(matrix) != len(ops) + 2 or any(not isinstance(r, list) for r in matrix):
        return None
    n = len(matrix)
    edge = [[bool(j > i and j < len(matrix[i]) and matrix[i][j]) for j in range(n)]
            for i in range(n)]
    forward, backward = {0}, {n - 1}
    for j in range(1, n):
        if any(edge[i][j] and i in forward for i in range(j)):
            forward.add(j)
    for i in range(n - 2, -1, -1):
        if any(edge[i][j] and j in backward for j in range(i + 1, n)):
            backward.add(i)
    live = [v in forward and v in backward for v in range(n)]
    edges = []
    for j in range(1, n):
        preds = [i for i in range(j) if edge[i][j] and live[i] and live[j]]
        slots = CELL_SLOTS.get(ops[j - 1].get("_type", ""), ()) if 0 < j < n - 1 and \
            isinstance(ops[j - 1], dict) else ()
        names = _slot_names(len(preds), slots)
        edges += [(i, j, names[preds.index(i)] if i in preds else "", i in preds)
                  for i in range(j) if edge[i][j]]
    cap = cell.get("max_edges")
    valid = live[n - 1] and not (isinstance(cap, int) and sum(e[3] for e in edges) > cap)
    if not valid:
        live = [False] * n
        edges = [(i, j, "", False) for i, j, _, _ in edges]
    labels = ["input"] + [_op_label(op) for op in ops] + ["output"]
    return CellGraph(_cell_title(path), tuple(labels), tuple(live), tuple(edges), valid)


def _slot_names(m: int, slots: tuple[str, ...]) -> list[str]:
    """Each of ``m`` inputs' slot names, by the cell's rule (`memnas.searchspace.Cell`)."""
    k = len(slots)
    if not k:
        return [""] * m
    if m <= k:
        return [slots[r] if r < m - 1 else ",".join(slots[r:]) for r in range(m)]
    return [slots[min(r, k - 1)] for r in range(m)]


def _op_label(op: Any) -> str:
    if not isinstance(op, dict):
        return str(op)
    args = [f"{k}={v}" for k, v in op.items() if k != "_type" and not isinstance(v, (dict, list))]
    return short_type(op.get("_type", "op")) + ("\n" + ", ".join(args) if args else "")


def _cell_title(path: str) -> str:
    """``"layers[0].mixer"`` -> ``"layer 0"``; another path as it is (``"cell"`` for the root)."""
    for key in ("layers", "blocks"):
        if path.startswith(f"{key}[") and path.endswith("].mixer"):
            return f"layer {path[len(key) + 1:-len('].mixer')]}"
    return path or "cell"


def cell_dot(graph: CellGraph) -> str:
    """The graph in Graphviz's DOT language (for ``st.graphviz_chart``): top to bottom,
    dead nodes and edges dashed and grey, edges labelled with the slots they fill."""
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = ["digraph cell {", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color="#666666"];']
    last = len(graph.nodes) - 1
    for v, (label, live) in enumerate(zip(graph.nodes, graph.live)):
        fill = "#e8eef7" if v in (0, last) else "#fdf1e1"
        style = "" if live else ', style="rounded,dashed", color="#bbbbbb", fontcolor="#999999"'
        lines.append(f"  n{v} [label={quote(label)}, fillcolor={quote(fill if live else 'white')}"
                     f"{style}];")
    for i, j, slots, live in graph.edges:
        attrs = [f"label={quote(slots)}"] if slots else []
        if not live:
            attrs.append('style=dashed, color="#bbbbbb"')
        lines.append(f"  n{i} -> n{j}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines)
