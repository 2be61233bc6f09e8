"""Symbolic specs `SequenceModel` and `Block`, and the torch modules they build."""

from __future__ import annotations

import math
from typing import Any

import pyglove as pg
import torch
import torch.nn.functional as F
from torch import nn

from memnas.searchspace.mixers import Mixer, SoftmaxAttention

_TYPE = pg.JSONConvertible.TYPE_NAME_KEY

POSITIONS = ("learned", "sinusoidal", "none")
CHANNEL_MIXERS = ("mlp", "glu")
NORMS = ("pre", "post")


class Block(pg.Object):
    """Spec of a residual block: a sequence mixer, then a channel mixer, each with a LayerNorm.

    Pre-norm (the default): ``x + mixer(norm(x))``, then ``x + mlp(norm(x))``
    (Xiong et al., "On Layer Normalization in the Transformer Architecture", 2020,
    https://arxiv.org/abs/2002.04745). Post-norm, as in the original Transformer:
    ``norm(x + mixer(x))``, then ``norm(x + mlp(x))``.

    The channel mixer is a GELU MLP, ``W_2 gelu(W_1 x)`` with hidden width
    ``mlp_ratio * d_model``, or a SwiGLU unit, ``W_2 (silu(W_1 x) * W_3 x)``
    (Shazeer, "GLU Variants Improve Transformer", 2020, https://arxiv.org/abs/2002.05202)
    with hidden width ``round(2/3 * mlp_ratio * d_model)`` so that both have about
    the same number of parameters.

    Attributes:
      mixer: The causal sequence mixer spec.
      mlp_ratio: Hidden width of the channel mixer as a multiple of ``d_model``;
        0 drops the channel mixer.
      channel_mixer: One of `CHANNEL_MIXERS`: ``"mlp"`` or ``"glu"``.
      norm: One of `NORMS`: ``"pre"`` or ``"post"`` (where the LayerNorms sit).
    """

    mixer: Mixer
    mlp_ratio: int = 2
    channel_mixer: str = "mlp"
    norm: str = "pre"

    def build(self, d_model: int) -> nn.Module:
        """Returns a `BlockModule` of width ``d_model``.

        Raises:
          ValueError: naming the bad value, if the spec cannot be built.
        """
        if self.mlp_ratio < 0:
            raise ValueError(f"Block: mlp_ratio must be >= 0, got {self.mlp_ratio!r}")
        if self.channel_mixer not in CHANNEL_MIXERS:
            raise ValueError(
                f"Block: channel_mixer must be one of {CHANNEL_MIXERS}, got {self.channel_mixer!r}"
            )
        if self.norm not in NORMS:
            raise ValueError(f"Block: norm must be one of {NORMS}, got {self.norm!r}")
        return BlockModule(
            d_model,
            self.mixer.build(d_model),
            self.mlp_ratio,
            channel_mixer=self.channel_mixer,
            norm=self.norm,
        )

    def canonical(self) -> "Block":
        """This block with the channel-mixer kind reset to ``"mlp"`` when there is no
        channel mixer (``mlp_ratio == 0``), where the kind changes nothing (see
        `memnas.hashing.canonicalize`)."""
        return canonical_through_data(self)

    def canonical_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """`canonical` on the block's JSON ``data`` (see `memnas.hashing.canonicalize`)."""
        if data["mlp_ratio"] == 0 and data["channel_mixer"] != "mlp":
            return {**data, "channel_mixer": "mlp"}
        return data


class SequenceModel(pg.Object):
    """Spec of a causal sequence model: token ids ``(B, T)`` -> logits ``(B, T, vocab_size)``.

    Token embedding (plus position embedding), the stack of `Block` s, a final
    LayerNorm and a linear output head.

    Attributes:
      vocab_size: Number of token ids.
      d_model: Model width.
      layers: The blocks, applied in order.
      positions: ``"learned"`` (an embedding table of ``max_len`` rows),
        ``"sinusoidal"`` (fixed, Vaswani et al. 2017) or ``"none"``.
      max_len: Longest sequence a ``"learned"`` model accepts.
      tie_embeddings: Share the output head's weights with the token embedding.
    """

    vocab_size: int
    d_model: int
    layers: list[Block]
    positions: str = "learned"
    max_len: int = 128
    tie_embeddings: bool = False

    def build(self) -> nn.Module:
        """Returns a freshly initialized `SequenceModelModule`.

        Raises:
          ValueError: naming the bad value, if the spec cannot be built.
        """
        if self.positions not in POSITIONS:
            raise ValueError(
                f"SequenceModel: positions must be one of {POSITIONS}, got {self.positions!r}"
            )
        if self.d_model < 1 or self.vocab_size < 1 or not self.layers:
            raise ValueError(
                "SequenceModel needs d_model >= 1, vocab_size >= 1 and at least one layer, "
                f"got d_model={self.d_model}, vocab_size={self.vocab_size}, "
                f"{len(self.layers)} layers"
            )
        blocks = [block.build(self.d_model) for block in self.layers]
        return SequenceModelModule(
            self.vocab_size,
            self.d_model,
            blocks,
            positions=self.positions,
            max_len=self.max_len,
            tie_embeddings=self.tie_embeddings,
        )

    def canonical(self) -> "SequenceModel":
        """This model with sliding windows that cover ``max_len`` made full attention.

        With learned positions no sequence is longer than ``max_len``, so a
        `SoftmaxAttention` window ``>= max_len`` changes nothing (see
        `memnas.hashing.canonicalize`).
        """
        return canonical_through_data(self)

    def canonical_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """`canonical` on the model's JSON ``data`` (see `memnas.hashing.canonicalize`)."""
        if data["positions"] != "learned":
            return data
        layers = [_full_window(block, data["max_len"]) for block in data["layers"]]
        if all(new is old for new, old in zip(layers, data["layers"])):
            return data
        return {**data, "layers": layers}

    def state_numbers(self) -> int | None:
        """Numbers one sequence's inference state holds after ``max_len`` tokens.

        The sum over layers of each mixer's `Mixer.state_numbers` (KV caches of
        attention, fixed states of recurrent mixers); None when a mixer does not
        say. Times the element size it is the ``state_bytes`` cost.
        """
        total = 0
        for block in self.layers:
            numbers = block.mixer.state_numbers(self.d_model, self.max_len)
            if numbers is None:
                return None
            total += int(numbers)
        return total

    def summary(self) -> str:
        """A one-line description, e.g. ``"d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2"``.

        The channel mixers are listed per layer when they differ (``"mlp x2,x4"``,
        ``"mlp x2,glu x2"``). Post-norm is shown as a last part: ``" | post-norm"``
        when every layer is post-norm, ``" | norm pre,post"`` per layer when mixed.
        """
        mixers = " > ".join(block.mixer.summary() for block in self.layers)
        kinds = [block.channel_mixer for block in self.layers]
        ratios = [block.mlp_ratio for block in self.layers]
        if len(set(zip(kinds, ratios))) == 1:
            channel = f"{kinds[0]} x{ratios[0]}"
        elif len(set(kinds)) == 1:
            channel = f"{kinds[0]} " + ",".join(f"x{r}" for r in ratios)
        else:
            channel = ",".join(f"{k} x{r}" for k, r in zip(kinds, ratios))
        text = f"d={self.d_model} | {mixers} | {channel}"
        norms = [block.norm for block in self.layers]
        if set(norms) == {"post"}:
            text += " | post-norm"
        elif len(set(norms)) > 1:
            text += " | norm " + ",".join(norms)
        return text


class BlockModule(nn.Module):
    """Residual block around a mixer module and an (optional) MLP or SwiGLU, pre- or post-norm."""

    def __init__(
        self,
        d_model: int,
        mixer: nn.Module,
        mlp_ratio: int,
        channel_mixer: str = "mlp",
        norm: str = "pre",
    ) -> None:
        super().__init__()
        self.pre_norm = norm == "pre"
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2: nn.Module | None = None
        self.mlp: nn.Module | None = None
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(d_model)
            if channel_mixer == "glu":
                self.mlp = SwiGLU(d_model, max(1, round(2 * mlp_ratio * d_model / 3)))
            else:
                self.mlp = nn.Sequential(
                    nn.Linear(d_model, mlp_ratio * d_model),
                    nn.GELU(),
                    nn.Linear(mlp_ratio * d_model, d_model),
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.mixer(self.norm1(x))
            if self.mlp is not None:
                x = x + self.mlp(self.norm2(x))
        else:
            x = self.norm1(x + self.mixer(x))
            if self.mlp is not None:
                x = self.norm2(x + self.mlp(x))
        return x


class SwiGLU(nn.Module):
    """``(..., D) -> (..., D)``: ``W_2 (silu(W_1 x) * W_3 x)``, hidden width ``hidden``."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden)  # W_1 and W_3, stacked
        self.down = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class SequenceModelModule(nn.Module):
    """Embedding, blocks, final norm and head: ``(B, T)`` long -> ``(B, T, V)`` logits."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        blocks: list[nn.Module],
        positions: str = "learned",
        max_len: int = 128,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.positions = positions
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model) if positions == "learned" else None
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.embed(tokens)
        if self.positions == "learned":
            if t > self.max_len:
                raise ValueError(
                    f"sequence length {t} exceeds the model's max_len={self.max_len}"
                )
            x = x + self.pos.weight[:t]
        elif self.positions == "sinusoidal":
            x = x + sinusoidal_positions(t, x.shape[-1], device=x.device, dtype=x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def sinusoidal_positions(
    length: int,
    dim: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The fixed sine/cosine position table of Vaswani et al. (2017), shape ``(length, dim)``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.to(dtype)



def _full_window(block: dict[str, Any], max_len: int) -> dict[str, Any]:
    """A block's JSON with its `SoftmaxAttention` window made None where it covers ``max_len``."""
    mixer = block.get("mixer")
    if not isinstance(mixer, dict) or (mixer.get("window") or 0) < max_len:
        return block
    cls = pg.JSONConvertible.class_from_typename(mixer.get(_TYPE, ""))
    if cls is None or not issubclass(cls, SoftmaxAttention):
        return block
    return {**block, "mixer": {**mixer, "window": None}}


def canonical_through_data(obj: pg.Object) -> pg.Object:
    """``obj.canonical()`` for a class whose rule is written on JSON (``canonical_data``,
    see `memnas.hashing.canonicalize`): ``obj`` itself when the rule changes nothing."""
    data = pg.to_json(obj)
    out = obj.canonical_data(data)
    return obj if out is data or out == data else pg.from_json(out)
