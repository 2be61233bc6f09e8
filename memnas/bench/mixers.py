"""`memnas bench mixers`: training-step time of recurrent mixers' parallel vs reference forms."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable, Sequence

import pyglove as pg
import torch
from torch import nn

from memnas.searchspace import Mixer, registered_mixers

BATCH = 4
D_MODEL = 64


def run(
    quick: bool = False,
    mixers: Sequence[str] | None = None,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """Times ``forward`` against ``reference_forward`` for every recurrent mixer.

    A recurrent mixer is a registered mixer whose built module has a
    ``reference_forward`` (the naive token-by-token recurrence) beside its
    ``forward`` (the parallel or chunked training form). Each is built at
    ``d_model=64`` from its ``bench_config()`` classmethod when it has one, else
    from the first choice of every decision in its ``space()``. On a float32
    batch ``(4, T, 64)`` on the CPU, one training step (forward, a scalar loss,
    backward) of each form is timed in the same run: after one warmup step each,
    rounds of a few ``forward`` steps and one ``reference_forward`` step, so
    that load from other processes falls on both; the medians are kept. The
    largest absolute output difference between the two forms is measured in
    float64 (``max_abs_err``), and the float32 chunked form's against the float64
    reference (``max_abs_err_f32``).

    Mixers whose recurrence is nonlinear in the state have no parallel form
    (their module sets ``per_token_only = True``, e.g. the ELM neuron): they are
    listed apart, under ``"per_token"``, with the time of one training step and
    tokens per second.

    Args:
      quick: Use ``T=128`` and fewer repeats instead of ``T=512``.
      mixers: Registry names to benchmark; default every registered mixer
        (those without ``reference_forward`` are skipped).
      seq_len: Override the sequence length.

    Returns:
      ``{"config": {...}, "mixers": {name: {"speedup", "max_abs_err",
      "max_abs_err_f32", "chunked_ms", "reference_ms", "summary"}}, "per_token":
      {name: {"step_ms", "tokens_per_s", "summary"}}}``; a mixer that fails to
      build or run gets ``{"error": message}`` instead.
    """
    t = seq_len or (128 if quick else 512)
    rounds, per_round = (2, 3) if quick else (3, 5)
    registry = registered_mixers()
    names = list(registry) if mixers is None else list(mixers)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise KeyError(f"no mixer registered as {unknown}; registered: {sorted(registry)}")
    config = {
        "batch": BATCH,
        "d_model": D_MODEL,
        "seq_len": t,
        "dtype": "float32",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "chunked_repeats": rounds * per_round,
        "reference_repeats": rounds,
    }
    print(
        f"mixers: forward vs reference_forward, one training step (fwd+bwd), "
        f"B={BATCH} T={t} d_model={D_MODEL} float32 CPU, {torch.get_num_threads()} threads"
    )
    results: dict[str, dict[str, Any]] = {}
    sequential: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = _bench_spec(registry[name])
        try:
            torch.manual_seed(0)
            module = spec.build(D_MODEL)
            if getattr(module, "per_token_only", False):
                sequential[name] = _measure_sequential(module, t, rounds)
                sequential[name]["summary"] = spec.summary()
                continue
            if not callable(getattr(module, "reference_forward", None)):
                continue
            results[name] = _measure(module, t, rounds, per_round)
            results[name]["summary"] = spec.summary()
        except Exception as e:  # a broken mixer is reported, not fatal to the others
            results[name] = {"error": f"{type(e).__name__}: {e}", "summary": spec.summary()}
    _print_table(results)
    _print_sequential(sequential, t)
    return {"config": config, "mixers": results, "per_token": sequential}


def _bench_spec(cls: type[Mixer]) -> Mixer:
    if hasattr(cls, "bench_config"):
        return cls.bench_config()
    space = cls.space()
    if not pg.is_deterministic(space):
        space = pg.materialize(space, pg.dna_spec(space).first_dna())
    return space


def _measure(module: nn.Module, t: int, rounds: int, per_round: int) -> dict[str, float]:
    x = torch.randn(BATCH, t, D_MODEL)
    chunked: list[float] = []
    reference: list[float] = []
    _step_ms(module, module.forward, x)  # warmup
    _step_ms(module, module.reference_forward, x)
    for _ in range(rounds):  # interleaved, so that load from other processes hits both
        chunked.extend(_step_ms(module, module.forward, x) for _ in range(per_round))
        reference.append(_step_ms(module, module.reference_forward, x))
    # Not under no_grad: some memories (e.g. test-time-training ones) differentiate inside.
    exact = copy.deepcopy(module).double()
    x64 = x.double()
    truth = exact.reference_forward(x64).detach()
    err = (exact(x64).detach() - truth).abs().max().item()
    err32 = (module(x).detach().double() - truth).abs().max().item()
    chunked_ms, reference_ms = statistics.median(chunked), statistics.median(reference)
    return {
        "speedup": reference_ms / chunked_ms,
        "max_abs_err": err,
        "max_abs_err_f32": err32,
        "chunked_ms": chunked_ms,
        "reference_ms": reference_ms,
    }


def _measure_sequential(module: nn.Module, t: int, rounds: int) -> dict[str, float]:
    x = torch.randn(BATCH, t, D_MODEL)
    _step_ms(module, module.forward, x)  # warmup
    step_ms = statistics.median(_step_ms(module, module.forward, x) for _ in range(rounds))
    return {"step_ms": step_ms, "tokens_per_s": BATCH * t / (step_ms / 1e3)}


def _step_ms(
    module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> float:
    module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    fn(x).square().mean().backward()
    return 1e3 * (time.perf_counter() - start)


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'mixer':<20} {'config':<36} {'chunked ms':>11} {'reference ms':>13} "
        f"{'speedup':>8} {'max|diff| f64':>14} {'f32 vs f64':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<20} {r['summary']:<36} ERROR {r['error']}")
            continue
        print(
            f"{name:<20} {r['summary']:<36} {r['chunked_ms']:>11.2f} {r['reference_ms']:>13.1f} "
            f"{r['speedup']:>7.1f}x {r['max_abs_err']:>14.2e} {r['max_abs_err_f32']:>11.2e}"
        )
    if not results:
        print("(no registered mixer has a reference_forward)")


def _print_sequential(results: dict[str, dict[str, Any]], t: int) -> None:
    if not results:
        return
    print(f"\nno parallel form (recurrence nonlinear in the state): per-token loop, T={t}")
    for name, r in results.items():
        print(f"{name:<20} {r['summary']:<36} {r['step_ms']:>11.1f} ms/step "
              f"{r['tokens_per_s']:>10.0f} tokens/s")
