"""Functional hash (Unified Functional Hashing, Gillard et al. 2023): hash what a candidate computes."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from typing import Any, Callable

import numpy as np

from memnas.hashing._canonical import canonical_json


def evaluator_fingerprint(evaluator: Any) -> str:
    """A stable sha256 naming what an evaluator measures; equal results need equal fingerprints.

    Uses, in order: the evaluator's own ``fingerprint()`` method; the canonical JSON of a
    symbolic object; the fields of a dataclass (recursively, by repr); the source
    code of a plain function. Anything else falls back to its qualified type name and repr.
    """
    own = getattr(evaluator, "fingerprint", None)
    if callable(own):
        text = str(own())
    else:
        import pyglove as pg

        if isinstance(evaluator, pg.Symbolic):
            text = canonical_json(evaluator)
        elif dataclasses.is_dataclass(evaluator) and not isinstance(evaluator, type):
            text = json.dumps({"type": _qualname(type(evaluator)),
                               "fields": _fields(evaluator)}, sort_keys=True)
        elif inspect.isfunction(evaluator) or inspect.ismethod(evaluator):
            try:
                source = inspect.getsource(evaluator)
            except (OSError, TypeError):
                source = evaluator.__code__.co_code.hex()
            text = _qualname(evaluator) + "\n" + source
        else:
            text = _qualname(type(evaluator)) + "\n" + repr(evaluator)
    return hashlib.sha256(text.encode()).hexdigest()


def _fields(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"type": _qualname(type(obj)),
                **{f.name: _fields(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    return repr(obj)


def _qualname(x: Any) -> str:
    return f"{getattr(x, '__module__', '?')}.{getattr(x, '__qualname__', type(x).__qualname__)}"


def quantize(values: np.ndarray, digits: int = 6) -> bytes:
    """Rounds to ``digits`` significant digits (so float noise does not split a hash).

    Each value becomes its decimal exponent and its mantissa rounded to ``digits - 1``
    decimals (in numpy: a logits tensor of thousands of values in well under a
    millisecond); zeros (of either sign) are one value, NaN counts as infinity.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.where(np.isnan(v), np.inf, v)
    finite = np.isfinite(v) & (v != 0)
    scale = np.zeros(v.shape)
    scale[finite] = np.floor(np.log10(np.abs(v[finite])))
    mantissa = np.where(finite, v / 10.0 ** scale, np.where(np.isfinite(v), 0.0, v))
    mantissa = np.round(mantissa, digits - 1)
    carry = np.isfinite(mantissa) & (np.abs(mantissa) >= 10)  # 9.9999996 -> 10.00000
    scale[carry] += 1
    mantissa[carry] = np.round(mantissa[carry] / 10, digits - 1)
    mantissa[mantissa == 0] = 0.0  # -0.0
    return mantissa.tobytes() + scale.astype(np.int16).tobytes()


def default_probe(candidate: Any, batch: int = 2, length: int = 24, seed: int = 1234) -> Any:
    """A fixed probe input for a candidate that does not supply one.

    Candidates may define ``probe_input(seed) -> tensor``; sequence models with a
    ``vocab_size`` get token ids; otherwise there is no default and a probe must be given.
    """
    own = getattr(candidate, "probe_input", None)
    if callable(own):
        return own(seed)
    vocab = getattr(candidate, "vocab_size", None)
    if isinstance(vocab, int):
        import torch

        g = torch.Generator().manual_seed(seed)
        length = min(length, int(getattr(candidate, "max_len", length) or length))
        return torch.randint(0, vocab, (batch, length), generator=g)
    raise ValueError(f"no probe input for {type(candidate).__name__}: give probe=... or define "
                     "probe_input(seed) on the candidate")


def functional_hash(candidate: Any, probe: Any = None, fingerprint: str = "",
                    train_steps: int = 0, digits: int = 6, seed: int = 0) -> str:
    """sha256 of what ``candidate`` computes on a fixed probe, with the evaluator's fingerprint.

    One algorithm for every representation:
      * a candidate with ``build()`` is built under ``seed`` on CPU in float64 and run
        on the probe batch (``train_steps`` > 0 first takes that many fixed SGD steps
        toward a fixed random target, hashing short-budget outputs as UFH does; a
        module without trainable parameters is not trained);
      * a plain callable (function, lambda) is called on each of the probe inputs.
    Outputs are rounded to ``digits`` significant digits before hashing.

    Args:
      candidate: a symbolic spec with ``build()`` or any callable.
      probe: input batch (tensor) for ``build()`` candidates (default: `default_probe`),
        or a sequence of argument tuples (or single arguments) for callables.
      fingerprint: the evaluator's fingerprint; the same function under another
        evaluator is another hash.
      train_steps: fixed SGD steps before reading the outputs (neural candidates).
      digits: significant digits kept.
      seed: seed for building (and the training target).

    Raises:
      ValueError: a callable without probe inputs, or a candidate that neither builds nor calls.
    """
    h = hashlib.sha256(fingerprint.encode() + b"|")
    if hasattr(candidate, "build") and callable(candidate.build):
        out = _neural_outputs(candidate, probe, train_steps, seed)
    elif callable(candidate):
        if probe is None:
            raise ValueError(f"functional_hash of callable {candidate!r:.60} needs probe inputs")
        out = np.array([_call(candidate, p) for p in probe], dtype=np.float64)
    else:
        raise ValueError(f"cannot hash {type(candidate).__name__}: it has no build() and is not "
                         "callable")
    h.update(str(np.shape(out)).encode() + b"|" + quantize(out, digits))
    return h.hexdigest()


def _call(fn: Callable, args: Any) -> Any:
    return fn(*args) if isinstance(args, tuple) else fn(args)


def _neural_outputs(candidate: Any, probe: Any, train_steps: int, seed: int) -> np.ndarray:
    import torch

    probe = default_probe(candidate) if probe is None else probe
    state = torch.random.get_rng_state()
    default_dtype = torch.get_default_dtype()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a probe is tiny; threads would only fight the workers
    try:
        # The CPU generator only: torch.manual_seed also queues a CUDA seeding, which
        # records a stack trace each call (~0.5 ms, a tenth of a hash); the build is on CPU.
        torch.random.default_generator.manual_seed(seed)
        torch.set_default_dtype(torch.float64)
        module = candidate.build().to("cpu", torch.float64)
        x = probe.to(torch.float64) if torch.is_floating_point(probe) else probe
        params = [p for p in module.parameters() if p.requires_grad]
        if train_steps and params:  # nothing to train: its outputs are its function
            out = module(x)
            target = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1),
                                 dtype=torch.float64)
            # Plain SGD (lr 0.01) by hand: torch.optim's first step in a process costs ~1 s.
            for step in range(train_steps):
                loss = (((module(x) if step else out) - target) ** 2).mean()
                if not loss.requires_grad:  # no parameter reaches the output
                    break
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        if g is not None:
                            p.add_(g, alpha=-0.01)
        module.eval()
        with torch.no_grad():
            out = module(x)
        return out.detach().cpu().numpy()
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(default_dtype)
        torch.random.set_rng_state(state)

