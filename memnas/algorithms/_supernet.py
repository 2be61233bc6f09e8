"""Weight-sharing supernets from PyGlove spaces: mixed operations, weightings, DNA derivation."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyglove as pg
import torch
from torch import nn

from memnas.errors import ConfigError

WEIGHTINGS = ("softmax", "max_w")
DEFAULT_RULES = ("first", "last")


def op_weights(alpha: torch.Tensor, weighting: str = "softmax") -> torch.Tensor:
    """The weights a mixed operation gives its choices, from their architecture weights.

    ``"softmax"`` (DARTS): ``w = softmax(alpha)``. ``"max_w"`` (sharpDARTS, Hundt et al.
    2019): ``1 - max(w) + w_i``, so the leading choice gets weight 1 and the others
    ``1 - (max(w) - w_i)``: every choice keeps training while the alphas separate.
    Only the gap to the leader is learnt, so while every choice helps the loss the
    alphas stay near a tie (with two choices they barely move: `memnas bench darts`).

    Args:
      alpha: Architecture weights of one decision, shape ``(n,)``.
      weighting: One of `WEIGHTINGS`.

    Raises:
      ValueError: for an unknown weighting.
    """
    w = torch.softmax(alpha, dim=-1)
    if weighting == "softmax":
        return w
    if weighting == "max_w":
        return 1.0 - w.max() + w
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def is_module_choice(value: Any) -> bool:
    """Whether a choice is a module: a torch module or a spec with a ``build()`` method."""
    return isinstance(value, nn.Module) or callable(getattr(value, "build", None))


@dataclasses.dataclass
class MixedDecision:
    """A `oneof`/`manyof` over modules, turned into a mixed operation.

    Attributes:
      id: The decision's id in the DNA spec (e.g. ``"layers[=1/2][0].mixer"``).
      label: Its name if it has one, else its id (used in curve names).
      choices: A short label per choice (class names, ``#i`` added on repeats).
      num_choices: How many choices a candidate takes (1 for a `oneof`, k for a `manyof`).
    """

    id: str
    label: str
    choices: list[str]
    num_choices: int = 1


class _ArchState:
    """The architecture weights and weighting shared by every mixed op of one supernet."""

    def __init__(self, weighting: str) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        self.alphas = nn.ParameterList()

    def weights(self, index: int) -> torch.Tensor:
        return op_weights(self.alphas[index], self.weighting)


class MixedOp(nn.Module):
    """``sum_i w_i op_i(...)`` over the choices of one decision, ``w`` from `op_weights`."""

    def __init__(self, ops: Sequence[nn.Module], index: int, arch: _ArchState) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.index = index
        self._arch = arch  # a plain object: the alphas are registered by the Supernet

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        w = self._arch.weights(self.index)
        out = None
        for i, op in enumerate(self.ops):
            y = w[i] * op(*args, **kwargs)
            out = y if out is None else out + y
        return out


class ScaledOp(nn.Module):
    """``w_i op(...)``: choice ``i`` of a `manyof` over modules, all of which the supernet keeps."""

    def __init__(self, op: nn.Module, index: int, choice: int, arch: _ArchState) -> None:
        super().__init__()
        self.op, self.index, self.choice = op, index, choice
        self._arch = arch

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._arch.weights(self.index)[self.choice] * self.op(*args, **kwargs)


class _MixedSpec:
    """Stands where a `oneof` over module specs was: ``build(...)`` builds every choice."""

    def __init__(self, choices: list[Any], index: int, arch: _ArchState) -> None:
        self.choices, self.index, self.arch = choices, index, arch

    def build(self, *args: Any, **kwargs: Any) -> MixedOp:
        return MixedOp([_build(c, args, kwargs) for c in self.choices], self.index, self.arch)


class _ScaledSpec:
    """Stands for choice ``i`` of a `manyof` over module specs."""

    def __init__(self, choice: Any, index: int, i: int, arch: _ArchState) -> None:
        self.value, self.index, self.i, self.arch = choice, index, i, arch

    def build(self, *args: Any, **kwargs: Any) -> ScaledOp:
        return ScaledOp(_build(self.value, args, kwargs), self.index, self.i, self.arch)


def _build(choice: Any, args: tuple, kwargs: dict) -> nn.Module:
    return choice if isinstance(choice, nn.Module) else choice.build(*args, **kwargs)


class Supernet(nn.Module):
    """A space's network with every module decision mixed; ``forward`` is the network's.

    Attributes:
      net: The built network.
      decisions: The mixed decisions, in DNA order; ``alphas[i]`` belongs to ``decisions[i]``.
      alphas: The architecture weights (one vector per decision).
      fixed: The index (list of indices for a `manyof`, value for a float) taken by every
        other decision the network contains, keyed by decision id.
    """

    def __init__(self, net: nn.Module, decisions: list[MixedDecision], arch: _ArchState,
                 fixed: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.alphas = arch.alphas
        self.decisions = decisions
        self.fixed = fixed
        self._arch = arch

    @property
    def weighting(self) -> str:
        """``"softmax"`` or ``"max_w"``."""
        return self._arch.weighting

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The alphas."""
        return list(self.alphas)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the alphas."""
        arch = {id(p) for p in self.alphas}
        return [p for p in self.parameters() if id(p) not in arch]

    def probabilities(self) -> dict[str, np.ndarray]:
        """``softmax(alpha)`` per decision id."""
        with torch.no_grad():
            return {d.id: torch.softmax(a, -1).cpu().numpy()
                    for d, a in zip(self.decisions, self.alphas)}


def resolve(dp: pg.geno.DecisionPoint, fixed: Mapping[str, Any], default: str) -> Any:
    """The value a decision that is not mixed takes in the supernet.

    ``fixed`` is looked up by the decision's name, then its id: an index into the
    choices (a list of k indices for a `manyof`) or a float. Otherwise ``default``:
    ``"first"`` takes the first choice(s) (a float's minimum), ``"last"`` the last (its
    maximum).

    Raises:
      ConfigError: for a bad rule, a fixed value out of range, or a decision kind
        other than oneof/manyof/floatv.
    """
    if default not in DEFAULT_RULES:
        raise ConfigError(f"default must be one of {DEFAULT_RULES}, got {default!r}")
    key = next((k for k in (dp.name, str(dp.id)) if k is not None and k in fixed), None)
    if isinstance(dp, pg.geno.Float):
        if key is not None:
            value = float(fixed[key])
            if not dp.min_value <= value <= dp.max_value:
                raise ConfigError(f"fixed[{key!r}]={value} is outside "
                                  f"[{dp.min_value}, {dp.max_value}]")
            return value
        return dp.min_value if default == "first" else dp.max_value
    if not isinstance(dp, pg.geno.Choices):
        raise ConfigError(f"sharpDARTS handles oneof/manyof/floatv decisions, got "
                          f"{type(dp).__name__} at {str(dp.id)!r}")
    n, k = len(dp.candidates), dp.num_choices
    if key is None:
        return list(range(k)) if default == "first" else list(range(n - k, n))
    value = fixed[key]
    picks = [value] if isinstance(value, (int, np.integer)) else list(value)
    if len(picks) != k or not all(isinstance(p, (int, np.integer)) and 0 <= p < n for p in picks):
        raise ConfigError(f"fixed[{key!r}] must be {k} choice index(es) in [0, {n}), got {value!r}")
    return [int(p) for p in picks]


class _Builder:
    """Walks a hyper value and its DNA spec together, replacing each decision."""

    def __init__(self, fixed: Mapping[str, Any], default: str, weighting: str) -> None:
        self.fixed, self.default = dict(fixed), default
        self.arch = _ArchState(weighting)
        self.decisions: list[MixedDecision] = []
        self.taken: dict[str, Any] = {}

    def walk(self, value: Any, space: pg.geno.Space) -> Any:
        if isinstance(value, pg.hyper.HyperPrimitive):
            prims = [(pg.KeyPath(), value)]
        elif isinstance(value, pg.Symbolic):
            prims = list(pg.hyper.ObjectTemplate(value).hyper_primitives)
        else:
            prims = []
        if len(prims) != len(space.elements):
            raise ConfigError(f"cannot match the decisions of {value!r:.80} to its DNA spec "
                              f"({len(prims)} vs {len(space.elements)}); sharpDARTS handles "
                              "oneof/manyof/floatv decisions")
        if not prims:
            return copy.deepcopy(value) if isinstance(value, nn.Module) else value
        out = {str(path): self.replace(prim, dp) for (path, prim), dp in zip(prims, space.elements)}
        if "" in out:
            return out[""]
        value = pg.clone(value, deep=True)
        with pg.enable_type_check(False):
            value.rebind(out, raise_on_no_change=False)
        return value

    def replace(self, prim: Any, dp: pg.geno.DecisionPoint) -> Any:
        if not isinstance(prim, pg.hyper.Choices):
            value = resolve(dp, self.fixed, self.default)
            self.taken[str(dp.id)] = value
            return value
        candidates = list(prim.candidates)
        if not all(is_module_choice(c) for c in candidates):
            picks = resolve(dp, self.fixed, self.default)
            self.taken[str(dp.id)] = picks
            walked = [self.walk(candidates[p], dp.candidates[p]) for p in picks]
            return walked[0] if dp.num_choices == 1 else walked
        index = len(self.decisions)
        self.decisions.append(MixedDecision(str(dp.id), dp.name or str(dp.id),
                                            _labels(candidates), dp.num_choices))
        self.arch.alphas.append(nn.Parameter(1e-3 * torch.randn(len(candidates))))
        walked = [self.walk(c, s) for c, s in zip(candidates, dp.candidates)]
        if dp.num_choices == 1:
            if all(isinstance(c, nn.Module) for c in walked):
                return MixedOp(walked, index, self.arch)
            return _MixedSpec(walked, index, self.arch)
        return [ScaledOp(c, index, i, self.arch) if isinstance(c, nn.Module)
                else _ScaledSpec(c, index, i, self.arch) for i, c in enumerate(walked)]


def _labels(candidates: list[Any]) -> list[str]:
    names = [type(c).__name__ for c in candidates]
    return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def build_supernet(space: Any, fixed: Mapping[str, Any] | None = None, default: str = "first",
                   weighting: str = "softmax") -> Supernet:
    """Builds the weight-sharing supernet of a PyGlove space.

    Every `oneof` whose choices are all modules (torch modules, or specs with a
    ``build()`` method) becomes a `MixedOp` over all its choices, with one architecture
    weight per choice; a `manyof` over modules keeps all its n choices, choice i scaled
    by its weight ``w_i`` (so the spec receiving the list must accept any length).
    Decisions inside a mixed choice are walked the same way. Every other decision
    (widths, depth, a mixer's head count) takes the value `resolve` gives it. The
    network is the result's ``build()`` (or the result itself if it is a torch module).

    Args:
      space: The PyGlove hyper value.
      fixed: ``{decision name or id: choice index (or k indices, or a float)}``.
      default: ``"first"`` or ``"last"``: the rule for the other decisions.
      weighting: ``"softmax"`` or ``"max_w"`` (see `op_weights`).

    Raises:
      ConfigError: the space has no module decision, its root builds no module, or a
        fixed value is bad.
    """
    builder = _Builder(fixed or {}, default, weighting)
    value = builder.walk(space, pg.dna_spec(space))
    if not builder.decisions:
        raise ConfigError("the space has no oneof/manyof whose choices are all modules "
                          "(torch modules or specs with build()); sharpDARTS has nothing to "
                          "mix among its decisions "
                          f"{[str(dp.id) for dp in pg.dna_spec(space).decision_points]}")
    if isinstance(value, nn.Module):
        net = value
    elif callable(getattr(value, "build", None)):
        net = value.build()
    else:
        raise ConfigError(f"the space's root must be a torch module or a spec with build(), "
                          f"got {type(value).__name__}")
    return Supernet(net, builder.decisions, builder.arch, builder.taken)


def decision_ids(dna_spec: pg.DNASpec) -> set[str]:
    """Ids of every decision of a spec, a `manyof` as a whole and inside every choice."""
    ids: set[str] = set()

    def visit(space: pg.geno.Space) -> None:
        for dp in space.elements:
            ids.add(str(dp.id))
            for c in getattr(dp, "candidates", ()):
                visit(c)

    visit(dna_spec)
    return ids


def walk_decisions(dna_spec: pg.DNASpec, pick: Callable[[pg.geno.DecisionPoint], Any]) -> pg.DNA:
    """A DNA made by ``pick(decision) -> indices or float`` on each active decision.

    Decisions are visited in DNA order, a `manyof` as a whole (its picks, each followed
    by the decisions of the picked choice); inside a choice the spec's own candidates
    are walked, as `build_supernet` does.
    """
    numbers: list[Any] = []

    def visit(space: pg.geno.Space) -> None:
        for dp in space.elements:
            value = pick(dp)
            if isinstance(dp, pg.geno.Float):
                numbers.append(float(value))
                continue
            for c in value:
                numbers.append(int(c))
                visit(dp.candidates[c])

    visit(dna_spec)
    return pg.DNA.from_numbers(numbers, dna_spec)


def derive(dna_spec: pg.DNASpec, alphas: Mapping[str, Sequence[float]],
           fixed: Mapping[str, Any] | None = None, default: str = "first") -> pg.DNA:
    """The discrete architecture of a trained supernet.

    A mixed decision (id in ``alphas``) takes its argmax, or its top k for a `manyof`
    (in ascending index order when the `manyof` is sorted, else by weight); every other
    decision takes what `resolve` gives it, as in the supernet.

    Args:
      dna_spec: The space's DNA spec.
      alphas: Architecture weights per mixed decision id.
      fixed: As for `build_supernet`.
      default: As for `build_supernet`.
    """

    def pick(dp: pg.geno.DecisionPoint) -> Any:
        a = alphas.get(str(dp.id))
        if a is None:
            return resolve(dp, fixed or {}, default)
        a = np.asarray(a, dtype=np.float64)
        if len(a) != len(dp.candidates):
            raise ConfigError(f"{len(a)} alphas for decision {str(dp.id)!r} with "
                              f"{len(dp.candidates)} choices")
        top = [int(i) for i in np.argsort(-a, kind="stable")[: dp.num_choices]]
        return sorted(top) if dp.sorted else top

    return walk_decisions(dna_spec, pick)
