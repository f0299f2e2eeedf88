"""The memory's causal depthwise conv + SiLU: the torch taps form against conv1d, the C path against it."""

import pytest
import torch
from torch.nn import functional as F

from titans_cli.kernels import causal_conv, causal_conv_silu
from titans_cli.kernels.causal_conv import (
    causal_conv_silu_native,
    causal_conv_silu_reference,
    causal_depthwise_conv,
    native_supports,
)


def conv1d(x, weight):
    return F.conv1d(x.transpose(1, 2), weight, groups=x.shape[-1]).transpose(1, 2)


@pytest.mark.parametrize("batch,length,channels,taps", [(1, 1, 3, 1), (2, 17, 5, 4), (3, 40, 8, 13)])
def test_taps_match_conv1d(batch, length, channels, taps):
    """Values and gradients, float64."""
    gen = torch.Generator().manual_seed(length)
    x = torch.randn(batch, length + taps - 1, channels, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(channels, 1, taps, dtype=torch.float64, generator=gen, requires_grad=True)
    ours, reference = causal_depthwise_conv(x, weight), conv1d(x, weight)
    assert ours.shape == (batch, length, channels)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
    grads = torch.autograd.grad(ours, (x, weight), upstream)
    for g, r in zip(grads, torch.autograd.grad(reference, (x, weight), upstream)):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_taps_sum_half_precision_in_float32():
    x = torch.randn(1, 20, 4).to(torch.bfloat16)
    weight = torch.randn(4, 1, 5)
    ours = causal_depthwise_conv(x, weight)
    exact = conv1d(x.double(), weight.double())
    assert ours.dtype == torch.bfloat16
    # one rounding of the float32 sum to bf16 (2⁻⁸ relative), not one per tap
    assert ((ours.double() - exact).abs() <= exact.abs() * 2**-8 + 1e-6).all()


def test_the_c_conv_is_built():
    assert causal_conv.native is not None, "no C extension: install a C compiler and rerun `pip install -e .`"


# channels 5: no full vector; 8: one; 21: two and five single channels; 768: the benchmark config's q, k, v.
@pytest.mark.parametrize("channels", [5, 8, 21, 768])
@pytest.mark.parametrize("taps", [1, 4, 13])
@pytest.mark.parametrize("batch,length", [(1, 0), (1, 1), (3, 37)])
def test_c_conv_matches_the_reference(batch, length, channels, taps):
    gen = torch.Generator().manual_seed(channels + taps + length)
    x = torch.randn(batch, length + taps - 1, channels, generator=gen) * 3
    weight = torch.randn(channels, 1, taps, generator=gen)
    with torch.no_grad():
        assert native_supports(x, weight)
        ours, reference = causal_conv_silu_native(x, weight), causal_conv_silu_reference(x, weight)
    assert ours.shape == reference.shape == (batch, length, channels)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_c_conv_reads_a_strided_input():
    x = torch.randn(2, 30, 16)[:, :, ::2]
    weight = torch.randn(8, 1, 4)
    torch.testing.assert_close(causal_conv_silu_native(x, weight), causal_conv_silu_reference(x, weight))


def test_dispatch(monkeypatch):
    """C for float32 inference; the taps form where a gradient is needed, for float64, or under TITANS_KERNEL=torch."""
    calls = []
    monkeypatch.setattr("titans_cli.kernels.causal_conv_silu_native", lambda *a: calls.append("c"))
    monkeypatch.setattr("titans_cli.kernels.causal_conv_silu_reference", lambda *a: calls.append("torch"))
    x, weight = torch.randn(1, 10, 8), torch.randn(8, 1, 4)
    with torch.no_grad():
        causal_conv_silu(x, weight)
        causal_conv_silu(x.double(), weight.double())
        monkeypatch.setenv("TITANS_KERNEL", "torch")
        causal_conv_silu(x, weight)
    monkeypatch.delenv("TITANS_KERNEL")
    causal_conv_silu(x, weight.requires_grad_())
    assert calls == ["c", "torch", "torch", "torch"]
