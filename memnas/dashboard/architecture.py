"""A candidate's stored JSON as a block diagram and as symbolic text, without importing it."""

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
