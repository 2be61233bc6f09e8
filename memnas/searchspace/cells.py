"""Memory cells: a mixer composed from primitives as a small DAG, in NAS-Bench-101's encoding."""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace._cell_graph import PRODUCT, SLOTS, Analysis, analyse, slot_groups
from memnas.searchspace.cell_ops import (
    Attention,
    CellOp,
    Conv,
    DecayedScan,
    DeltaScan,
    Gate,
    Linear,
    LinearAttn,
    Product,
    default_ops,
)
from memnas.searchspace.mixers import Mixer
from memnas.searchspace.model import canonical_through_data
from memnas.searchspace.space import memory_space


class Cell(Mixer):
    """A causal sequence mixer composed from primitives: a DAG over ``N`` nodes.

    The encoding is NAS-Bench-101's (Ying et al., "NAS-Bench-101: Towards Reproducible
    Neural Architecture Search", ICML 2019, https://arxiv.org/abs/1902.09635): node 0
    is the block's input ``x`` ``(B, T, D)``, node ``N - 1`` its output, ``matrix`` an
    ``N x N`` strictly upper-triangular 0/1 adjacency (``matrix[i][j] = 1``: node ``j``
    takes node ``i``'s value), and ``ops[j - 1]`` the operation of intermediate node
    ``j`` (a `memnas.searchspace.cell_ops.CellOp`). Every node's value is ``(B, T, D)``;
    every primitive is causal, so the cell is.

    How a node takes its inputs (its live predecessors, see below, in node order):
      * most operations add them up into their one input; the output node is the
        sum of its inputs; `cell_ops.Product` multiplies them, `cell_ops.Sum` adds them;
      * operations with ordered inputs (``SLOTS``: ``q, k, v`` of attention, ``gate,
        q, k, v`` of the scans) fill them in node order. With fewer inputs than slots
        the last input fills the remaining slots (one input: ``q = k = v``; two:
        ``q`` and ``k = v``); with more, the extra inputs are added into the last slot.

    Graphs that are not NAS-Bench-101-valid still build, to a defined function: nodes
    that no path from the input reaches, and nodes that reach no output, are dropped
    with their edges (they cannot change the output); a cell whose output the input
    does not reach, or whose remaining graph has more than ``max_edges`` edges, is the
    empty cell and outputs zeros (its residual block passes its input on). So every
    DNA of `cell_space` builds.

    `canonical` (a rule of `memnas.hashing.canonicalize`) returns one cell for all
    cells that are the same computation written differently: dead nodes dropped,
    single-input `Sum`/`Product` nodes passed through, and the nodes renumbered by an
    exact canonical labelling of the graph with its operations and input slots
    (isomorphic graphs, commutative inputs in any order: one form). ``build`` creates
    the nodes' modules in that canonical order, so cells with one canonical form get
    the same weights from the same seed and compute the same function.

    Not registered as a mixer (it would join `memory_space`'s default choices): use
    `memory_cell_space`, or pass a cell (space) in ``memory_space(mixers=[...])``.

    Attributes:
      ops: The ``N - 2`` intermediate nodes' operations.
      matrix: The ``N x N`` adjacency, rows and columns in node order.
      max_edges: The cap on the edges of the pruned graph (None: no cap); NAS-Bench-101's is 9.
    """

    ops: list[CellOp]
    matrix: list[list[int]]
    max_edges: int | None = None

    @classmethod
    def from_inputs(cls, ops: Sequence[CellOp], inputs: Sequence[Sequence[int]],
                    output: Sequence[int], max_edges: int | None = None) -> "Cell":
        """The cell whose node ``j`` (1-based, ``ops[j - 1]``) takes ``inputs[j - 1]``, and
        whose output node (``len(ops) + 1``) takes ``output``."""
        n = len(ops) + 2
        if len(inputs) != len(ops):
            raise ValueError(f"Cell.from_inputs: one input list per op, got {len(inputs)} "
                             f"lists for {len(ops)} ops")
        matrix = [[0] * n for _ in range(n)]
        for j, preds in enumerate([*inputs, output], start=1):
            for i in preds:
                if not 0 <= i < j:
                    raise ValueError(f"Cell.from_inputs: node {j} may take nodes 0..{j - 1}, "
                                     f"got {i}")
                matrix[i][j] = 1
        return cls(ops=list(ops), matrix=matrix, max_edges=max_edges)

    def adjacency(self) -> list[list[int]]:
        """The matrix as plain lists, validated.

        Raises:
          ValueError: naming the bad value, if the matrix is not ``N x N`` (``N =
            len(ops) + 2``), strictly upper-triangular and 0/1, or ``max_edges`` < 0.
        """
        n = len(self.ops) + 2
        rows = [list(r.sym_values()) if isinstance(r, pg.List) else list(r)
                for r in (self.matrix.sym_values() if isinstance(self.matrix, pg.List)
                          else self.matrix)]
        if len(rows) != n or any(len(r) != n for r in rows):
            raise ValueError(f"Cell: matrix must be {n}x{n} for {n - 2} ops, got "
                             f"{[len(r) for r in rows]} rows")
        for i, row in enumerate(rows):
            for j, bit in enumerate(row):
                if bit not in (0, 1) or (bit and j <= i):
                    raise ValueError(f"Cell: matrix must be strictly upper-triangular 0/1, "
                                     f"got matrix[{i}][{j}]={bit!r}")
        if self.max_edges is not None and self.max_edges < 0:
            raise ValueError(f"Cell: max_edges must be None or >= 0, got {self.max_edges!r}")
        return rows

    def analysis(self) -> Analysis:
        """The live graph and canonical labelling (see `memnas.searchspace._cell_graph`)."""
        return analyse(self.adjacency(), [op.kind() for op in self.ops], self.max_edges)

    def check(self, d_model: int) -> None:
        """Raises ValueError if the matrix is malformed or an operation cannot be built."""
        self.adjacency()
        for op in self.ops:
            op.check(d_model)

    def build(self, d_model: int) -> "CellModule":
        """Returns a `CellModule` of width ``d_model`` (zeros out for the empty cell)."""
        self.check(d_model)
        a = self.analysis()
        n = len(self.ops) + 2
        if not a.valid:
            return CellModule([], [], [])
        inner = [v for v in a.preds if 0 < v < n - 1]
        modules = [(v, self.ops[v - 1].build(d_model)) for v in sorted(inner, key=a.rank.get)]
        plan = []
        for v in inner:
            op, preds = self.ops[v - 1], a.preds[v]
            if op.COMBINE == PRODUCT:
                groups = [[p] for p in preds]
            elif op.COMBINE == SLOTS:
                groups = slot_groups(preds, len(op.SLOTS))
            else:
                groups = [list(preds)]
            plan.append((v, [sorted(g, key=a.rank.get) for g in groups]))
        return CellModule(modules, plan, sorted(a.preds[n - 1], key=a.rank.get))

    def canonical(self) -> "Cell":
        """The canonical cell: one form for every cell that is this computation written differently.

        Dead nodes dropped, single-input `Sum`/`Product` nodes passed through,
        nodes renumbered by the canonical labelling (`_cell_graph.analyse`); the
        empty cell for a cell that computes zeros. No edge cap: within it already.
        """
        if self.is_partial:
            return self
        return canonical_through_data(self)

    def canonical_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """`canonical` on the cell's JSON ``data`` (see `memnas.hashing.canonicalize`):
        the ops' JSON reordered, no object built. The labelling reads only the ops'
        kinds from ``self``, which no rule of an op may change."""
        if self.is_partial:
            return data
        a = self.analysis()
        if not a.valid:
            return {**data, "ops": [], "matrix": [[0, 0], [0, 0]], "max_edges": None}
        size = len(a.order)
        if (self.max_edges is None and a.order == tuple(range(len(self.ops) + 2))
                and a.canonical_preds == tuple(a.preds.values())):
            return data  # already canonical
        matrix = [[0] * size for _ in range(size)]
        for j, preds in enumerate(a.canonical_preds):
            for i in preds:
                matrix[i][j] = 1
        return {**data, "ops": [data["ops"][v - 1] for v in a.order[1:-1]], "matrix": matrix,
                "max_edges": None}

    def state_numbers(self, d_model: int, max_len: int) -> int:
        """The sum over live nodes of their state (recurrent states, KV caches, conv inputs)."""
        n = len(self.ops) + 2
        return sum(self.ops[v - 1].state_numbers(d_model, max_len)
                   for v in self.analysis().preds if 0 < v < n - 1)

    def summary(self) -> str:
        """The live nodes in canonical order and the edge count, e.g.
        ``"cell(linear,linear,linear,linattn(h=1,elu+1),linear|8e)"``; ``"cell(identity|1e)"``
        (the input passed on), ``"cell(empty)"`` (zeros)."""
        a = self.analysis()
        if not a.valid:
            return "cell(empty)"
        labels = ",".join(self.ops[v - 1].label() for v in a.order[1:-1]) or "identity"
        return f"cell({labels}|{sum(map(len, a.canonical_preds))}e)"

    @classmethod
    def space(cls) -> Any:
        """`cell_space` with its defaults."""
        return cell_space()


class CellModule(nn.Module):
    """``(B, T, D) -> (B, T, D)``: a cell's live nodes evaluated in node order.

    ``nodes[str(j)]`` is node ``j``'s module (keyed by the spec's node numbers,
    created in canonical order); the empty cell has none and returns zeros.
    """

    def __init__(self, modules: list[tuple[int, nn.Module]],
                 plan: list[tuple[int, list[list[int]]]], output: list[int]) -> None:
        super().__init__()
        self.nodes = nn.ModuleDict({str(v): m for v, m in modules})
        self.plan = plan  # (node, the inputs summed into each of its arguments)
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.output:
            return torch.zeros_like(x)
        values = {0: x}
        for v, groups in self.plan:
            values[v] = self.nodes[str(v)](*[_total(values, g) for g in groups])
        return _total(values, self.output)


def _total(values: dict[int, torch.Tensor], nodes: list[int]) -> torch.Tensor:
    out = values[nodes[0]]
    for v in nodes[1:]:
        out = out + values[v]
    return out


def cell_space(num_nodes: int = 7, max_edges: int | None = 9,
               ops: Sequence[Any] | None = None) -> Any:
    """A PyGlove hyper value over `Cell` s of ``num_nodes`` nodes.

    Decisions: each intermediate node's operation (with the operation's own
    decisions, e.g. heads), and each of the ``N (N - 1) / 2`` edges ``i -> j``
    (``i < j``), present or not. Every DNA builds (see `Cell` for graphs outside
    NAS-Bench-101's valid ones).

    Args:
      num_nodes: ``N`` >= 2, the input and output nodes included (NAS-Bench-101: 7).
      max_edges: The cap on the live graph's edges (NAS-Bench-101: 9); None: no cap.
      ops: Operation choices: `CellOp` specs (which may hold hyper values) or classes
        (their ``space()``); default `cell_ops.default_ops`: linear, gate (sigmoid,
        SiLU), product, sum, short conv, norm, linear attention, GLA's decayed scan,
        the (gated) delta rule and softmax attention, with 1, 2 or 4 heads.

    Raises:
      ValueError: if ``num_nodes`` < 2 or there are no operation choices.
      TypeError: for an operation choice that is not a `CellOp`.
    """
    if not isinstance(num_nodes, int) or num_nodes < 2:
        raise ValueError(f"cell_space: num_nodes must be an int >= 2, got {num_nodes!r}")
    choices = _op_choices(ops)
    bit = [0, 1]

    def op() -> Any:
        clones = [pg.clone(c, deep=True) for c in choices]
        return clones[0] if len(clones) == 1 else pg.oneof(clones)

    n = num_nodes
    return Cell(ops=[op() for _ in range(n - 2)],
                matrix=[[pg.oneof(bit) if j > i else 0 for j in range(n)] for i in range(n)],
                max_edges=max_edges)


def memory_cell_space(vocab_size: int, num_nodes: int = 7, max_edges: int | None = 9,
                      ops: Sequence[Any] | None = None, **kwargs: Any) -> Any:
    """`memory_space` whose layers' mixers are cells of `cell_space`.

    Each layer chooses its own cell, as `memory_space` chooses a mixer per layer;
    the other decisions (width, depth, MLP ratio, ...) are `memory_space`'s.

    Args:
      vocab_size: The task's vocabulary size.
      num_nodes: Nodes per cell (see `cell_space`).
      max_edges: Edge cap per cell (see `cell_space`).
      ops: Operation choices (see `cell_space`).
      **kwargs: `memory_space`'s other arguments (``max_layers``, ``d_model``, ...).

    Raises:
      ValueError: as `cell_space` and `memory_space`, and if an operation's head count
        does not divide every width choice.
    """
    if "mixers" in kwargs:
        raise ValueError("memory_cell_space chooses the mixers (cells); use memory_space "
                         "to mix cells with other mixers")
    cell = cell_space(num_nodes, max_edges, ops)
    default = inspect.signature(memory_space).parameters["d_model"].default
    widths = list(kwargs.get("d_model", default))
    for choice in _op_choices(ops):
        heads = choice.sym_init_args.get("num_heads") if isinstance(choice, CellOp) else None
        options = heads.candidates if isinstance(heads, pg.hyper.OneOf) else [heads]
        for h in options:
            if isinstance(h, int) and any(h < 1 or d % h for d in widths):
                raise ValueError(f"{type(choice).__name__}: num_heads={h} does not divide every "
                                 f"width in {widths}")
    return memory_space(vocab_size, mixers=[cell], **kwargs)


def _op_choices(ops: Sequence[Any] | None) -> list[Any]:
    choices = []
    for o in default_ops() if ops is None else ops:
        if isinstance(o, type) and issubclass(o, CellOp):
            o = o.space()
        if not isinstance(o, (CellOp, pg.hyper.HyperValue)):
            raise TypeError(f"a cell operation choice must be a CellOp spec or class, got {o!r}")
        choices.append(o)
    if not choices:
        raise ValueError("cell_space needs at least one operation choice")
    return choices


def linear_attention_cell(num_heads: int = 1, feature_map: str = "elu+1") -> Cell:
    """`memnas.searchspace.LinearAttention` as a cell: q, k, v projections, the
    attention, the output projection (7 nodes, in `cell_space`'s default)."""
    return Cell.from_inputs([Linear(), Linear(), Linear(), LinearAttn(num_heads=num_heads,
                            feature_map=feature_map), Linear()],
                            [[0], [0], [0], [1, 2, 3], [4]], [5])


def softmax_attention_cell(num_heads: int = 1) -> Cell:
    """`memnas.searchspace.SoftmaxAttention` (full) as a cell: projections around attention."""
    return Cell.from_inputs([Linear(), Linear(), Linear(), Attention(num_heads=num_heads),
                             Linear()], [[0], [0], [0], [1, 2, 3], [4]], [5])


def gla_cell(num_heads: int = 4, conv_kernel: int = 4) -> Cell:
    """GLA (`mixers.gla.GatedLinearAttention` with ``expand_k=1``) as a cell."""
    return _gated_scan_cell(DecayedScan(num_heads=num_heads), conv_kernel, silu_alone=False)


def gated_deltanet_cell(num_heads: int = 1, conv_kernel: int = 4) -> Cell:
    """Gated DeltaNet (`mixers.gated_deltanet.GatedDeltaNet`) as a cell."""
    return _gated_scan_cell(DeltaScan(num_heads=num_heads), conv_kernel, silu_alone=True)


def _gated_scan_cell(scan: CellOp, conv_kernel: int, silu_alone: bool) -> Cell:
    """``W_o (scan(gate=x, q, k, v) * silu(W_g x))`` with ``q, k, v = act(W x)``, where
    ``act`` is a short conv and SiLU, or (no conv) SiLU alone or nothing."""
    ops: list[CellOp] = [Linear(), Linear(), Linear()]
    inputs: list[list[int]] = [[0], [0], [0]]
    qkv = [1, 2, 3]
    steps = ([Conv(kernel=conv_kernel), Gate(fn="silu")] if conv_kernel
             else [Gate(fn="silu")] if silu_alone else [])
    for step in steps:
        ops += [step, pg.clone(step), pg.clone(step)]
        inputs += [[qkv[0]], [qkv[1]], [qkv[2]]]
        qkv = [len(ops) - 2, len(ops) - 1, len(ops)]
    ops += [scan, Linear(), Gate(fn="silu"), Product(), Linear()]
    s = len(ops) - 4
    inputs += [[0, *qkv], [0], [s + 1], [s, s + 2], [s + 3]]
    return Cell.from_inputs(ops, inputs, [s + 4])
