"""fla's Triton kernels against memnas's per-token references on the same CUDA inputs.

Runs wherever CUDA and flash-linear-attention (``pip install 'memnas[gpu]'``) are
present; skipped elsewhere. The README says where it last ran.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import memnas.ops
from memnas.ops.backend import FLA_KERNELS, fla_installed, resolve

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and fla_installed()),
    reason="needs CUDA and flash-linear-attention",
)

B, T, H, K, V = 2, 200, 4, 64, 64  # T not a multiple of fla's chunk sizes


def _inputs(op: str) -> tuple[list, dict]:
    """Positional tensors (gates positional: fla names the GLA gate ``g``, memnas ``gk``)."""
    g = torch.Generator(device="cuda").manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device="cuda", generator=g)

    q, k, v = rand(B, T, H, K), F.normalize(rand(B, T, H, K), dim=-1), rand(B, T, H, V)
    beta = torch.sigmoid(rand(B, T, H))
    gates = {
        "delta_rule": [beta],
        "gated_delta_rule": [F.logsigmoid(rand(B, T, H) + 3), beta],
        "gla": [F.logsigmoid(rand(B, T, H, K) + 3) / 16],
        "simple_gla": [F.logsigmoid(rand(B, T, H) + 3)],
    }[op]
    return [q, k, v, *gates], {"initial_state": rand(B, H, K, V) * 0.1}


@pytest.mark.parametrize("op", sorted(FLA_KERNELS))
def test_fla_kernel_equals_the_memnas_reference(op: str) -> None:
    args, kwargs = _inputs(op)
    kernel = resolve(op, "fla", cuda=True)
    reference = getattr(memnas.ops, f"{op}_reference")
    o, state = kernel(*args, **kwargs, output_final_state=True)
    o_ref, state_ref = reference(*(a.double() for a in args),
                                 initial_state=kwargs["initial_state"].double(),
                                 output_final_state=True)
    torch.testing.assert_close(o.double(), o_ref, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(state.double(), state_ref, rtol=2e-2, atol=2e-2)
