"""Symbolic specs `SequenceModel` and `Block`, and the torch modules they build."""

from __future__ import annotations

import math

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace.mixers import Mixer

POSITIONS = ("learned", "sinusoidal", "none")


class Block(pg.Object):
    """Spec of a pre-norm residual block: ``x + mixer(norm(x))``, then ``x + mlp(norm(x))``.

    Attributes:
      mixer: The causal sequence mixer spec.
      mlp_ratio: Hidden width of the MLP as a multiple of ``d_model``; 0 drops the MLP.
    """

    mixer: Mixer
    mlp_ratio: int = 2

    def build(self, d_model: int) -> nn.Module:
        """Returns a `BlockModule` of width ``d_model``."""
        if self.mlp_ratio < 0:
            raise ValueError(f"Block: mlp_ratio must be >= 0, got {self.mlp_ratio!r}")
        return BlockModule(d_model, self.mixer.build(d_model), self.mlp_ratio)


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

    def summary(self) -> str:
        """A one-line description, e.g. ``"d=32 | attn(h=2) > linear(h=1,elu+1) | mlp x2"``.

        The MLP ratios are listed per layer (``"mlp x2,x4"``) when they differ.
        """
        mixers = " > ".join(block.mixer.summary() for block in self.layers)
        ratios = [block.mlp_ratio for block in self.layers]
        if len(set(ratios)) == 1:
            mlp = f"mlp x{ratios[0]}"
        else:
            mlp = "mlp " + ",".join(f"x{r}" for r in ratios)
        return f"d={self.d_model} | {mixers} | {mlp}"


class BlockModule(nn.Module):
    """Pre-norm residual block around a mixer module and an (optional) GELU MLP."""

    def __init__(self, d_model: int, mixer: nn.Module, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2: nn.Module | None = None
        self.mlp: nn.Module | None = None
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(d_model)
            self.mlp = nn.Sequential(
                nn.Linear(d_model, mlp_ratio * d_model),
                nn.GELU(),
                nn.Linear(mlp_ratio * d_model, d_model),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


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

