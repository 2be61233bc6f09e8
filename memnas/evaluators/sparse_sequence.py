"""`SparseSequenceEvaluator`: masked memory models trained on a sequence task (IMP on MQAR)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch

from memnas.errors import ConfigError
from memnas.evaluators.sparse_training import initial_masks, mask_costs
from memnas.evaluators.training import TrainEvaluator
from memnas.measurement import Context, Measurement
from memnas.searchspace.sparse import SparseNet, apply_masks, attach_masks, prunable


@dataclasses.dataclass(frozen=True)
class SparseSequenceEvaluator:
    """Trains a sparse memory model (a `SparseNet` over a `SequenceModel`) with `TrainEvaluator`.

    The masks cover every ``nn.Linear`` of the model (`prunable`): the mixers' projections
    (attention's ``qkv`` and ``out``, DeltaNet's ``beta``, Mamba's ``in_proj``, ``x_proj``,
    ``dt_proj`` and ``out_proj``, ...), the channel MLPs and the output head (the last, kept
    dense by IMP unless ``output_rate`` > 0); embeddings, norms, convolutions and
    per-channel parameters (Mamba's ``A_log``) are not pruned. Pruned weights are zeroed
    and their gradients masked, so AdamW (its decoupled decay included) keeps them
    exactly zero; they are zeroed once more after training.

    The algorithm's ``ctx.artifact`` steers the run as `SparseTrainEvaluator`'s does
    (`memnas.algorithms.lottery.LotteryTicketIMP` uses it): ``masks``, ``weights`` (the
    rewind state), ``init_seed`` (initial weights; default ``ctx.seed``), ``data_seed``
    (the trainer's batch stream; default ``ctx.seed``), ``return_weights`` and
    ``rewind_step`` (only 0 here: rewinding to initialisation).

    Returns the trainer's metrics (``accuracy``, ``loss``) and curve; its costs
    (``flops_per_token`` counts the dense matmuls, zeros included; ``latency_ms``;
    ``state_bytes``) with `SparseTrainEvaluator`'s mask costs on top: ``remaining`` (kept
    fraction of all prunable weights), ``sparsity`` (removed fraction of all but the
    output head's), ``weights`` (kept prunable weights) and ``params`` (nonzero
    parameters). With ``return_weights`` (or the artifact's), the artifact is
    ``{"masks", "prunable", "final", "rewind"}`` (numpy arrays).

    Attributes:
      trainer: The sequence trainer (task, steps, learning rate, ...); its
        ``lr_sweep`` must be empty (one run per trial).
      return_weights: Always return the weights artifact.
    """

    trainer: TrainEvaluator
    return_weights: bool = False

    def __post_init__(self) -> None:
        if self.trainer.lr_sweep:
            raise ConfigError(f"SparseSequenceEvaluator trains one run per trial; got a trainer "
                              f"with lr_sweep={self.trainer.lr_sweep!r}")

    def __call__(self, candidate: Any, ctx: Context | None = None) -> Measurement:
        """Trains and measures ``candidate``; see the class docstring.

        Raises:
          ConfigError: an artifact asking for late rewinding (``rewind_step`` or
            ``start_step`` above 0).
        """
        ctx = ctx if ctx is not None else Context()
        art: Mapping[str, Any] = ctx.artifact or {}
        for key in ("rewind_step", "start_step"):
            if int(art.get(key) or 0) != 0:
                raise ConfigError(f"SparseSequenceEvaluator rewinds to initialisation only; "
                                  f"got {key}={art[key]!r}")
        parent = candidate.parent if isinstance(candidate, SparseNet) else candidate
        init_seed = int(art.get("init_seed", ctx.seed))
        data_seed = int(art.get("data_seed", ctx.seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = parent.build()
        masks = initial_masks(model, candidate, art, init_seed)
        attach_masks(model, masks)
        rewind = _numpy(model)
        run = self.trainer(_Built(parent, model), dataclasses.replace(
            ctx, seed=data_seed, artifact=None, resume=None, checkpoint=False))
        apply_masks(model, masks)
        model = model.cpu()
        costs = {**run.costs, **mask_costs(model, masks)}
        m = Measurement(metrics=dict(run.metrics), costs=costs, curve=list(run.curve))
        if self.return_weights or art.get("return_weights"):
            m.artifact = {"masks": {n: v.cpu().numpy() for n, v in masks.items()},
                          "prunable": prunable(model), "final": _numpy(model),
                          "rewind": rewind}
        return m


class _Built:
    """A spec stand-in whose ``build()`` returns an already built (masked) module."""

    def __init__(self, spec: Any, module: torch.nn.Module) -> None:
        self._spec, self._module = spec, module

    def build(self) -> torch.nn.Module:
        return self._module

    def __getattr__(self, name: str) -> Any:  # vocab_size, state_numbers, summary, ...
        return getattr(self._spec, name)


def _numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().clone().numpy() for k, v in model.state_dict().items()}
