"""A cell's graph: live nodes, input slots, identity contraction and the canonical labelling."""

from __future__ import annotations

import dataclasses
from typing import Sequence

# What a node does with several inputs (`NodeKind.combine`): add them into its one input,
# multiply them (the product op), or fill its ordered slots (`slot_groups`).
SUM, PRODUCT, SLOTS = "sum", "product", "slots"


@dataclasses.dataclass(frozen=True)
class NodeKind:
    """What the graph algorithms need to know of one node's operation.

    Attributes:
      key: Identifies the operation and its decisions (equal keys: the same function
        of the same inputs, up to its own parameters).
      combine: `SUM`, `PRODUCT` or `SLOTS`.
      slots: Number of ordered inputs of a `SLOTS` operation.
      identity: Whether the operation with a single input returns it unchanged.
    """

    key: str
    combine: str = SUM
    slots: int = 1
    identity: bool = False


def slot_groups(preds: Sequence[int], slots: int) -> list[list[int]]:
    """The inputs of each of ``slots`` ordered slots, from predecessors in node order.

    With ``m`` predecessors: ``m == slots`` gives one each, in order; ``m < slots``
    gives the first ``m - 1`` slots one each and the last predecessor fills every
    slot left (``q, k, v`` from one input: ``q = k = v``; from two: ``q`` and
    ``k = v``); ``m > slots`` gives the first ``slots - 1`` slots one each and sums
    the rest into the last slot.
    """
    m = len(preds)
    if m <= slots:
        return [[preds[min(i, m - 1)]] for i in range(slots)]
    return [[p] for p in preds[: slots - 1]] + [list(preds[slots - 1:])]


def _labels(preds: Sequence[int], slots: int) -> list[int]:
    """Each predecessor's slot (the last slot for every predecessor summed into it)."""
    return [min(r, slots - 1) for r in range(len(preds))]


@dataclasses.dataclass(frozen=True)
class Analysis:
    """A cell's live graph and its canonical labelling.

    Attributes:
      valid: False when no path leads from the input to the output, or the live
        graph has more edges than the cap: the cell computes zeros.
      preds: Each live node's live predecessors, in node order (the graph ``build``
        computes; the input node has none).
      order: The canonical node order: original node indices, input first and
        output last; identity nodes contracted away are not in it.
      canonical_preds: For each position of ``order``, its predecessors as positions.
      rank: A sort key of every live node: its canonical position, or for a
        contracted node the position of the node it passes on, then its depth.
    """

    valid: bool
    preds: dict[int, tuple[int, ...]]
    order: tuple[int, ...]
    canonical_preds: tuple[tuple[int, ...], ...]
    rank: dict[int, tuple[int, int]]


EMPTY = Analysis(False, {}, (), (), {})


def live_preds(matrix: Sequence[Sequence[int]]) -> dict[int, tuple[int, ...]] | None:
    """Predecessors of the nodes that lie on a path from the input to the output.

    Nodes no path from the input reaches compute nothing, and nodes that reach no
    output change nothing: both are dropped with their edges. None when the output
    is not reachable from the input.
    """
    n = len(matrix)
    forward = {0}
    for j in range(1, n):
        if any(matrix[i][j] and i in forward for i in range(j)):
            forward.add(j)
    backward = {n - 1}
    for i in range(n - 2, -1, -1):
        if any(matrix[i][j] and j in backward for j in range(i + 1, n)):
            backward.add(i)
    live = forward & backward
    if n - 1 not in live:
        return None
    return {j: tuple(i for i in range(j) if matrix[i][j] and i in live) for j in sorted(live)}


def analyse(matrix: Sequence[Sequence[int]], kinds: Sequence[NodeKind],
            max_edges: int | None = None) -> Analysis:
    """Prunes, checks, contracts identities and labels a cell's graph canonically.

    Args:
      matrix: The ``N x N`` strictly upper-triangular 0/1 adjacency (validated by
        the caller).
      kinds: The ``N - 2`` intermediate nodes' operations.
      max_edges: The cap on the live graph's edges (None: no cap).
    """
    preds = live_preds(matrix)
    if preds is None or (max_edges is not None
                         and sum(map(len, preds.values())) > max_edges):
        return EMPTY
    n = len(matrix)
    kind = {j: kinds[j - 1] for j in preds if 0 < j < n - 1}
    # Edge labels: the slot each input fills, fixed by the cell's own node order.
    label: dict[tuple[int, int], int] = {}
    for v, ps in preds.items():
        slots = kind[v].slots if v in kind and kind[v].combine == SLOTS else 1
        for p, lab in zip(ps, _labels(ps, slots)):
            label[p, v] = lab
    graph = {v: list(ps) for v, ps in preds.items()}
    via: dict[int, int] = {}  # contracted node -> the input it passes on
    changed = True
    while changed:
        changed = False
        for v in sorted(graph):
            if v in kind and kind[v].identity and len(graph[v]) == 1:
                u = graph[v][0]
                if _contract(graph, label, v):
                    via[v] = u
                    changed = True
                    break
    order = _canonical_order(graph, label, kind, n)
    pos = {v: i for i, v in enumerate(order)}
    canonical_preds = tuple(tuple(sorted(pos[u] for u in graph[v])) for v in order)
    rank = {v: (pos[v], 0) for v in order}
    for v in via:
        root, depth = v, 0
        while root in via:
            root, depth = via[root], depth + 1
        rank[v] = (pos[root], depth)
    return Analysis(True, preds, order, canonical_preds, rank)


def _contract(graph: dict[int, list[int]], label: dict[tuple[int, int], int], v: int) -> bool:
    """Replaces identity node ``v`` (one input ``u``) by ``u`` in its successors, if sound.

    Not when a successor already takes ``u`` (``u + v`` is ``2u``, not ``u``), nor
    when the slots the successors' inputs fill could no longer follow from one node
    order. The edge ``u -> w`` takes the slot of ``v -> w``.
    """
    (u,) = graph[v]
    succs = [w for w, ps in graph.items() if v in ps]
    if any(u in graph[w] for w in succs):
        return False
    trial = {w: [u if p == v else p for p in ps] for w, ps in graph.items() if w != v}
    new_label = {(a, b): lab for (a, b), lab in label.items() if v not in (a, b)}
    new_label.update({(u, w): label[v, w] for w in succs})
    if _precedence_cycle(trial, new_label):
        return False
    del graph[v]
    graph.update(trial)
    label.clear()
    label.update(new_label)
    return True


def _before(graph: dict[int, list[int]], label: dict[tuple[int, int], int]) -> dict[int, set[int]]:
    """Nodes that must precede each node: its inputs, and inputs of lower slots at a
    common successor (so that node order gives every input its slot)."""
    before = {v: set(ps) for v, ps in graph.items()}
    for w, ps in graph.items():
        for a in ps:
            for b in ps:
                if label[a, w] < label[b, w]:
                    before[b].add(a)
    return before


def _precedence_cycle(graph: dict[int, list[int]], label: dict[tuple[int, int], int]) -> bool:
    before = _before(graph, label)
    placed: set[int] = set()
    while len(placed) < len(before):
        ready = [v for v, bs in before.items() if v not in placed and bs <= placed]
        if not ready:
            return True
        placed.update(ready)
    return False


def _canonical_order(graph: dict[int, list[int]], label: dict[tuple[int, int], int],
                     kind: dict[int, NodeKind], n: int) -> tuple[int, ...]:
    """The node order whose encoding (each node's operation, then its inputs' positions
    and slots) is lexicographically smallest among the orders that keep every input in
    its slot.

    Exact: the encoding determines the labelled graph, so isomorphic graphs (with
    their slots) get one order's encoding, and different ones different encodings.
    Built position by position: only nodes whose code at that position is the
    smallest reachable continue, and ties branch (graphs with symmetries).
    """
    before = _before(graph, label)
    bit = {v: 1 << i for i, v in enumerate(graph)}
    need = {v: sum(bit[u] for u in bs) for v, bs in before.items()}
    key = {v: kind[v].key if v in kind else ("\x00in" if v == 0 else "\x7fout") for v in graph}
    states: list[tuple[tuple[int, ...], dict[int, int], int]] = [((0,), {0: 0}, bit[0])]
    for step in range(1, len(graph)):
        best: tuple | None = None
        survivors: list[tuple[tuple[int, ...], dict[int, int], int]] = []
        for seq, pos, mask in states:
            for v in graph:
                if mask & bit[v] or need[v] & ~mask:
                    continue
                code = (key[v], tuple(sorted((pos[u], label[u, v]) for u in graph[v])))
                if best is None or code < best:
                    best, survivors = code, []
                if code == best:
                    survivors.append((seq + (v,), {**pos, v: step}, mask | bit[v]))
        states = survivors
    return states[0][0]
