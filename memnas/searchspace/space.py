"""`memory_space`: the default search space over memory-architecture sequence models."""

from __future__ import annotations

from typing import Any, Sequence

import pyglove as pg

from memnas.searchspace.mixers import Mixer, get_mixer, registered_mixers
from memnas.searchspace.model import CHANNEL_MIXERS, NORMS, Block, SequenceModel


def memory_space(
    vocab_size: int,
    max_layers: int = 3,
    d_model: Sequence[int] = (16, 32, 64),
    mlp_ratio: Sequence[int] = (1, 2, 4),
    mixers: Sequence[Any] | None = None,
    min_layers: int = 1,
    positions: str = "learned",
    max_len: int = 128,
    channel_mixer: Sequence[str] = ("mlp",),
    norm: Sequence[str] = ("pre",),
) -> Any:
    """Returns a PyGlove hyper value over `SequenceModel` specs.

    Decisions: the width (one for the model), the depth (``min_layers`` to
    ``max_layers``) and, independently for each layer (so stacks can be hybrid),
    the mixer (with the mixer's own decisions, e.g. its number of heads), the MLP
    ratio, the channel mixer and the norm placement. A choice with one option is
    no decision: by default every block is a pre-norm block with a GELU MLP, as
    before these two choices existed; pass ``channel_mixer=("mlp", "glu")`` and
    ``norm=("pre", "post")`` to search them. The result works with
    ``pg.dna_spec``, ``pg.random_sample``, ``pg.materialize`` and every
    ``pg.DNAGenerator``.

    Args:
      vocab_size: The task's vocabulary size.
      max_layers: Most blocks a candidate has.
      d_model: Width choices.
      mlp_ratio: MLP ratio choices (0 means no MLP).
      mixers: The mixer choices, in order: registry names, `Mixer` classes (their
        ``space()`` is used), `Mixer` specs that may hold hyper values, or hyper
        values over `Mixer` specs (e.g. a ``pg.oneof`` of them). Defaults
        to every registered mixer, sorted by name. Pin this in an experiment you
        intend to resume: registering a new mixer changes the default space and
        so the meaning of stored DNA.
      min_layers: Fewest blocks a candidate has.
      positions: Position embedding kind, see `SequenceModel`.
      max_len: Longest sequence the models accept. Set it to the task's sequence
        length: the learned position table (``max_len * d_model``) counts as
        parameters.
      channel_mixer: Channel mixer choices, each ``"mlp"`` or ``"glu"`` (see `Block`).
      norm: Norm placement choices, each ``"pre"`` or ``"post"`` (see `Block`).

    Raises:
      ValueError: if a choice is empty or out of range, or a mixer's head count
        does not divide some width choice.
    """
    if not 1 <= min_layers <= max_layers:
        raise ValueError(
            f"need 1 <= min_layers <= max_layers, got min_layers={min_layers}, "
            f"max_layers={max_layers}"
        )
    d_model, mlp_ratio = list(d_model), list(mlp_ratio)
    if not d_model or not mlp_ratio:
        raise ValueError(f"d_model and mlp_ratio need choices, got {d_model}, {mlp_ratio}")
    channel_mixer, norm = list(channel_mixer), list(norm)
    for name, choices, allowed in (
        ("channel_mixer", channel_mixer, CHANNEL_MIXERS),
        ("norm", norm, NORMS),
    ):
        if not choices or not set(choices) <= set(allowed):
            raise ValueError(
                f"{name} choices must be a non-empty subset of {allowed}, got {choices}"
            )
    mixer_spaces = [_mixer_space(m) for m in (registered_mixers() if mixers is None else mixers)]
    if not mixer_spaces:
        raise ValueError("memory_space needs at least one mixer; none is registered or given")
    for space in mixer_spaces:
        _check_heads(space, d_model)

    def block() -> Block:
        return Block(
            mixer=_oneof([pg.clone(s, deep=True) for s in mixer_spaces]),
            mlp_ratio=_oneof(mlp_ratio),
            channel_mixer=_oneof(channel_mixer),
            norm=_oneof(norm),
        )

    depths = [[block() for _ in range(n)] for n in range(min_layers, max_layers + 1)]
    return SequenceModel(
        vocab_size=vocab_size,
        d_model=_oneof(d_model),
        layers=_oneof(depths),
        positions=positions,
        max_len=max_len,
    )


def _oneof(candidates: list[Any]) -> Any:
    return candidates[0] if len(candidates) == 1 else pg.oneof(candidates)


def _mixer_space(choice: Any) -> Any:
    if isinstance(choice, str):
        return get_mixer(choice).space()
    if isinstance(choice, type) and issubclass(choice, Mixer):
        return choice.space()
    if isinstance(choice, (Mixer, pg.hyper.HyperValue)):
        return choice
    raise TypeError(
        "a mixer choice must be a registry name, a Mixer class, a Mixer spec or a hyper "
        f"value over Mixer specs, got {choice!r}"
    )


def _check_heads(space: Any, widths: list[int]) -> None:
    if not isinstance(space, Mixer) or "num_heads" not in space.sym_init_args:
        return
    heads = space.sym_getattr("num_heads")
    if isinstance(heads, pg.hyper.OneOf):
        options = heads.candidates
    elif isinstance(heads, pg.hyper.HyperValue):
        return  # another kind of decision: checked when a candidate is built
    else:
        options = [heads]
    for h in options:
        for d in widths:
            if not isinstance(h, int) or h < 1 or d % h:
                raise ValueError(
                    f"{type(space).__name__}: num_heads={h!r} does not divide "
                    f"d_model={d}; choose heads that divide every width in {widths}"
                )
