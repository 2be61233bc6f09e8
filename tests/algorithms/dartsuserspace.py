"""A user's own search space with module choices (not memnas's), for the sharpDARTS tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyglove as pg
import torch
from torch import nn


class Dense(pg.Object):
    """``relu(W x)``: the op that can learn the task."""

    def build(self, width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(width, width), nn.ReLU())


class Zero(pg.Object):
    """Outputs zeros: the op that cannot."""

    def build(self, width: int) -> nn.Module:
        return _Zero()


class Skip(pg.Object):
    """The identity."""

    def build(self, width: int) -> nn.Module:
        return nn.Identity()


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


class _Net(nn.Module):
    def __init__(self, spec: "Net") -> None:
        super().__init__()
        self.inp = nn.Linear(spec.in_dim, spec.width)
        self.op = spec.op.build(spec.width)
        self.extras = nn.ModuleList(o.build(spec.width) for o in spec.extras)
        self.act = spec.act
        self.out = nn.Linear(spec.width, spec.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.op(torch.tanh(self.inp(x)))
        h = h + sum(e(h) for e in self.extras)  # the extras are summed: any number works
        return self.out(self.act(h))


class Net(pg.Object):
    """An MLP classifier: input layer, one chosen op, a sum of extra ops, an activation."""

    in_dim: int
    width: int
    classes: int
    op: pg.Object
    extras: list
    act: nn.Module

    def build(self) -> nn.Module:
        return _Net(self)


def space(width=pg.oneof([8, 16])):
    """A oneof over three op specs, a manyof(2) over ops, a oneof over torch modules, a width."""
    return Net(in_dim=6, width=width, classes=3, op=pg.oneof([Zero(), Dense(), Skip()]),
               extras=pg.manyof(2, [Zero(), Dense(), Skip()], sorted=True),
               act=pg.oneof([nn.Tanh(), nn.ReLU()]))


@dataclasses.dataclass(frozen=True)
class Teacher:
    """Classification by a fixed random two-layer teacher network: ``batch(n, seed)``."""

    in_dim: int = 6
    classes: int = 3
    vocab_size: int = 3

    def batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(1234)
        w1, w2 = rng.normal(size=(self.in_dim, 16)), rng.normal(size=(16, self.classes))
        x = np.random.default_rng(seed).normal(size=(n, self.in_dim))
        y = (np.maximum(x @ w1, 0) @ w2).argmax(-1)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@dataclasses.dataclass(frozen=True)
class TeacherEvaluator:
    """Trains a candidate ``Net`` on `Teacher` for a few steps: held-out accuracy."""

    task: Teacher = Teacher()
    steps: int = 60
    batch_size: int = 64

    def __call__(self, candidate, ctx):
        torch.manual_seed(ctx.seed)
        model = candidate.build()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(self.steps):
            x, y = self.task.batch(self.batch_size, 10_000 + step)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, y = self.task.batch(512, 99)
        with torch.no_grad():
            acc = float((model(x).argmax(-1) == y).float().mean())
        return {"accuracy": acc}
