"""A toy where the cache's three kinds of match occur: duplicate, canonical, functional."""

import pyglove as pg
import torch


class _Scale(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


@pg.members([("a", pg.typing.Int()), ("b", pg.typing.Float(default=1.0)),
             ("mode", pg.typing.Str(default="off")), ("note", pg.typing.Str(default=""))])
class Gain(pg.Object):
    """Multiplies by ``a``, plus ``b`` when ``mode == "on"``; ``note`` is a label.

    Its canonical rule resets ``b`` when it is off (canonical twins); ``note`` and the
    split of the factor between ``a`` and ``b`` only the functional hash sees through.
    """

    def canonical(self):
        return self if self.mode == "on" else self.clone(override={"b": 1.0})

    def factor(self):
        return self.a + (self.b if self.mode == "on" else 0.0)

    def build(self):
        return _Scale(self.factor())

    def probe_input(self, seed):
        return torch.randn(2, 3, generator=torch.Generator().manual_seed(seed))


def gain_score(c, ctx):
    return {"accuracy": float(c.factor())}


SPACE = Gain(a=pg.oneof([1, 2]), b=pg.oneof([1.0, 2.0, 5.0]), mode=pg.oneof(["off", "on"]),
             note=pg.oneof(["", "x"]))
SEQUENCE = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1],
            [1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0], [0, 2, 0, 1], [0, 2, 0, 0],
            [0, 0, 0, 0]]
"""DNA of ``SPACE`` proposed in this order by ``Replay``. With two workers on the
in-process executor (a trial runs while the next ones are drafted): #0 Gain(a=1)
evaluated; attached to it: #1 (itself: duplicate), #2 (b=5, off: canonical), #3 (#2
again: duplicate), #4 (note="x": functional); #5 Gain(a=2, on) evaluated (factor 3);
hits: #6 Gain(a=1, b=2, on) of #5 (factor 3: functional), #7 Gain(a=1, b=2) of #0
(canonical), #8 Gain(a=1, b=5, note="x") of #0 (functional: its canonical twin #4 was
no evaluation), #9 (#2 again: duplicate) and #10 (#0 again: duplicate)."""


@pg.members([("picks", pg.typing.List(pg.typing.List(pg.typing.Int())))])
class Replay(pg.geno.DNAGenerator):
    """Proposes the DNA ``picks`` in order, then stops."""

    def _setup(self):
        self._next = 0

    def _propose(self):
        if self._next >= len(self.picks):
            raise StopIteration
        self._next += 1
        return pg.DNA(list(self.picks[self._next - 1]))
