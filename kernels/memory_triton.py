"""The chunked memory recurrence (SPEC 2, 2b) as a Triton forward kernel: ingest and inference only.

One program per (batch, head) walks every chunk of the span in order. The memory weights W^l and the
momentum S^l of every layer stay in registers as float32 tiles from the first chunk to the last; global
memory sees them twice (loaded at the start, written at the end). Per chunk the program computes the
same numbers as `memory_chunked._chunk`:

    gate coefficients c, β, b, m     cumulative log sums, ratios formed as exp(later − earlier)
    forward of M₀ on the keys        z^l = a^{l−1} W₀^lᵀ, a^l = SiLU(z^l)
    analytic backward                δ^L = M₀(k) − v, δ^l = (δ^{l+1} W₀^{l+1}) ⊙ σ'(z^l)
    surprise                         ½‖M₀(k) − v‖²
    dual-form read, layer by layer   W_t z = β_t W₀ z + b_t S₀ z − Σ_{i≤t} c_{t,i} δ_i (a_iᵀ z)
    chunk-end state (full chunks)    M_n = β_n M₀ + b_n S₀ − Σ_i c_{n,i} u_i,  S_n = E_n S₀ − Σ_i m_i u_i

A partial last chunk is read but not committed, as in `RecurrenceResult`; a chunk shorter than 16 tokens
is held in a 16-column tile, padded like a partial chunk. No autograd: training uses the
torch form. Activations q/k/v may be float32, float16 or bfloat16; everything inside is float32, and
float32 products run as TF32×3 on tensor cores (not plain TF32), so results match the torch form to
about float32 rounding.

On-chip budget (ptxas for sm_90, Triton 3.9; TRITON_NOTES.md has the table). The state, 2·Σ_l d_out·d_in
floats, lives in registers: activations are held feature-major, [features, C], so the state is always
the register operand of a tensor-core product and only chunk-sized tiles are staged in shared memory.
Every configuration takes 255 registers per thread and spills some of the state to local memory (about
1 KiB per thread at d=32, depth 2, C=16; 6 KiB at d=64, depth 2, C=64): correct, served from L1/L2,
slower. Shared memory grows with (widest layer × C) and with C²: d=64, depth 2, C=64 needs 192 KiB (an
sm_90 SM has 227 KiB, sm_80 163 KiB). Larger ones are refused.

Run on an H200 (Triton 3.6, 2026-11-22; TRITON_NOTES.md): every shape `triton_supported` accepts matched
the torch form without the gradient clip in float32, float16 and bfloat16, d=128 at depth 2 included; with
the clip only three shapes ran (d=32; depth 1, 2, 3), and the clip is not refused elsewhere. Shapes that
failed there or never ran are refused, so the dispatcher keeps the torch form for them; so is any
expansion but 2, the only one run there.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from titans_cli.kernels.recurrence import RecurrenceResult

try:
    import triton
    import triton.language as tl
except ImportError:  # triton is Linux x86-64 only (pyproject); the dispatcher then keeps the torch form
    triton = None

# `@triton.jit` picks the CPU interpreter or the GPU compiler when it decorates, i.e. when this module is
# imported with or without TRITON_INTERPRET=1. Interpreting also needs the flag when `triton.language` is
# first imported and at launch (tests/test_kernel_triton.py says why).
INTERPRETED = triton is not None and bool(triton.knobs.runtime.interpret)

HEAD_DIMS = (16, 32, 64, 128)
CHUNK_SIZES = (8, 16, 32, 64, 128)
# tl.dot needs every dimension ≥ 16 on a GPU: a shorter chunk rides in a 16-token tile whose extra tokens
# are masked like a partial chunk's (the bundled models use chunks of 8).
MIN_TILE = 16
# Chunk sizes whose kernel has run only under the interpreter, never on a GPU. As for every shape not yet
# seen on one, the dispatcher keeps the torch form for them unless TITANS_KERNEL=triton asks for the
# kernel; bench/gpu_session.sh runs their tests on the next GPU.
UNVERIFIED_CHUNK_SIZES = (8,)
MAX_DEPTH = 3
# d=128, depth 2, e=2 (512 KiB), the largest state verified on a GPU (TRITON_NOTES.md, "On a GPU"). It does
# not fit in a program's registers and spills to local memory, so it is correct but slow.
MAX_STATE_FLOATS = 131072
# In a 16-token tile (C ≤ 16) Triton 3.6 builds deep memories with 8 warps that make illegal memory
# accesses on an H200 (seen at C=16: d=32 depth 3, d=64 depth 2 and 3); up to this state size they run
# correctly on 4 warps. d=128 depth 2 at C=16 ran correctly on 8 warps, and on 4 gave no result in 480 s.
MAX_STATE_FLOATS_C16_4_WARPS = 65536
# Largest (widest layer × C) activation tile and chunk per depth. Beyond these the kernel needs more than
# the 227 KiB of shared memory an sm_90 SM offers (ptxas figures in TRITON_NOTES.md), so it is refused
# up front instead of after a minute of compiling; smaller GPUs are caught at launch (`_launching`).
_TILE_LIMITS = {1: (16384, 128), 2: (8192, 64), 3: (4096, 64)}
# Float32 products on tensor cores as three TF32 products (≈ float32 accuracy). Plain "ieee" goes through
# FMA layouts that hold whole operand rows per thread: on sm_90 it spills 6–9 KiB per thread at d=32,
# depth 2, and takes up to two minutes to compile (TRITON_NOTES.md). The interpreter computes in float32
# whatever this says.
DEFAULT_PRECISION = "tf32x3"
_FLOAT_ACTIVATIONS = (torch.float32, torch.float16, torch.bfloat16)
# Configurations whose compiled kernel needed more shared memory than the GPU has (the limit differs by
# architecture: ~99 KiB on sm_86/89, ~163 KiB on sm_80, ~227 KiB on sm_90), found at first launch.
_TOO_BIG: dict[tuple, str] = {}


class TritonUnsupported(ValueError):
    """The inputs are outside what the kernel handles; the caller should use the torch form."""


def triton_supported(head_dim: int, depth: int, chunk_size: int, device, hidden: int | None = None,
                     verified: bool = True) -> bool:  # fmt: skip
    """Whether `memory_recurrence_triton` runs this configuration (hidden defaults to 2·head_dim); with
    `verified`, only where it has also run on a GPU (see UNVERIFIED_CHUNK_SIZES)."""
    if hidden is None:
        hidden = 2 * head_dim
    device = torch.device(device)
    if verified and device.type == "cuda" and chunk_size in UNVERIFIED_CHUNK_SIZES:
        return False
    return triton is not None and not _config_problem("recurrence", head_dim, hidden, depth, chunk_size, device)


def _tile(chunk_size: int) -> int:
    return max(MIN_TILE, chunk_size)


def _config_problem(kernel: str, head_dim: int, hidden: int, depth: int, chunk_size: int,
                    device: torch.device) -> str:  # fmt: skip
    too_big = _TOO_BIG.get((kernel, head_dim, hidden, depth, chunk_size, _device_key(device)))
    if too_big:
        return too_big
    if device.type != "cuda" and not INTERPRETED:
        return f"device {device} is not CUDA (set TRITON_INTERPRET=1 to run the kernel on CPU)"
    if head_dim not in HEAD_DIMS:
        return f"head width {head_dim} is not one of {HEAD_DIMS}"
    if chunk_size not in CHUNK_SIZES:
        return f"chunk size {chunk_size} is not one of {CHUNK_SIZES}"
    if not 1 <= depth <= MAX_DEPTH:
        return f"memory depth {depth} is not in 1..{MAX_DEPTH}"
    if depth > 1 and hidden != 2 * head_dim:
        return f"hidden width {hidden} is not 2 × the head width, the only expansion run on a GPU"
    if _state_floats(head_dim, hidden, depth) > MAX_STATE_FLOATS:
        return f"a depth-{depth} memory of width {hidden} was never verified on a GPU"
    max_tile, max_chunk = _TILE_LIMITS[depth]
    widest = head_dim if depth == 1 else hidden
    if kernel == "recurrence" and (widest * _tile(chunk_size) > max_tile or chunk_size > max_chunk):
        return f"depth {depth}, width {widest}, chunk {chunk_size} needs more shared memory than sm_90 has"
    return ""


def _device_key(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


@contextlib.contextmanager
def _launching(kernel: str, head_dim: int, hidden: int, depth: int, block: int, device: torch.device):
    """Turn Triton's out-of-resources error into `TritonUnsupported`, and remember it for later calls."""
    try:
        with torch.no_grad():
            yield
    except triton.runtime.errors.OutOfResources as error:
        key = (kernel, head_dim, hidden, depth, block, _device_key(device))
        config = f"d={head_dim}, hidden={hidden}, depth={depth}, C={block}"
        _TOO_BIG[key] = f"the {kernel} kernel for {config} does not fit {device}: {error}"
        raise TritonUnsupported(_TOO_BIG[key]) from error


def _state_floats(head_dim: int, hidden: int, depth: int) -> int:
    """2·Σ_l d_out·d_in: weights and momentum of every layer."""
    return 2 * head_dim * head_dim if depth == 1 else 2 * hidden * (2 * head_dim + (depth - 2) * hidden)


def _num_warps(head_dim: int, hidden: int, depth: int, chunk_size: int = 0) -> int:
    """More warps for bigger state tiles, so each thread holds fewer registers (see TRITON_NOTES.md), except
    for a deep memory's recurrence in a 16-token tile (`chunk_size` ≤ 16; 0 for the read kernel): see
    MAX_STATE_FLOATS_C16_4_WARPS."""
    state_floats = _state_floats(head_dim, hidden, depth)
    if depth > 1 and 0 < chunk_size <= MIN_TILE and state_floats <= MAX_STATE_FLOATS_C16_4_WARPS:
        return 4
    return 4 if state_floats <= 8192 else 8


if triton is not None:

    @triton.jit
    def _silu(z):
        return z * tl.sigmoid(z)

    @triton.jit
    def _silu_grad(z):
        s = tl.sigmoid(z)
        return s * (1 + z * (1 - s))

    @triton.jit
    def _sq(x):
        """‖column‖² of a feature-major tile: one value per token."""
        return tl.sum(x * x, 0)

    @triton.jit
    def _clip_scale(norm_sq, grad_clip):
        """min(1, τ/‖u‖) per token, as `memory_mlp.clip_scale`."""
        return grad_clip / tl.sqrt(tl.maximum(norm_sq, grad_clip * grad_clip))

    @triton.jit
    def _mm(a, b, PRECISION: tl.constexpr):
        return tl.dot(a, b, input_precision=PRECISION)

    @triton.jit
    def _load_tile(ptr, pid, ROWS: tl.constexpr, COLS: tl.constexpr):
        r = tl.arange(0, ROWS)
        c = tl.arange(0, COLS)
        return tl.load(ptr + pid * ROWS * COLS + r[:, None] * COLS + c[None, :])

    @triton.jit
    def _store_tile(ptr, pid, x, ROWS: tl.constexpr, COLS: tl.constexpr):
        r = tl.arange(0, ROWS)
        c = tl.arange(0, COLS)
        tl.store(ptr + pid * ROWS * COLS + r[:, None] * COLS + c[None, :], x)

    @triton.jit
    def _read_layer(r, w, s, a_in, delta, c_t, beta, b, PRECISION: tl.constexpr):
        """One layer of M_t at each query column in the dual form (SPEC 2b), feature-major:

        W_t r_t = β_t W₀ r_t + b_t S₀ r_t − Σ_i δ_i c_{t,i} (a_i · r_t), with c_t[i, t] = c_{t,i}.
        """
        p = beta[None, :] * _mm(w, r, PRECISION) + b[None, :] * _mm(s, r, PRECISION)
        return p - _mm(delta, c_t * _mm(tl.trans(a_in), r, PRECISION), PRECISION)

    @triton.jit
    def _commit_layer(w, s, delta, a_in, c_end, m, beta_n, b_n, e_n, PRECISION: tl.constexpr):
        """Chunk-end W and S of one layer; u_i = δ_i a_iᵀ summed with the end-of-chunk gate weights."""
        u_w = _mm(delta * c_end[None, :], tl.trans(a_in), PRECISION)
        u_s = _mm(delta * m[None, :], tl.trans(a_in), PRECISION)
        return beta_n * w + b_n * s - u_w, e_n * s - u_s

    @triton.jit
    def _recurrence_kernel(
        q_ptr, k_ptr, v_ptr, theta_ptr, log_eta_ptr, log_keep_ptr,
        w0_ptr, s0_ptr, w1_ptr, s1_ptr, w2_ptr, s2_ptr,
        y_ptr, surprise_ptr, length, grad_clip,
        D: tl.constexpr, HID: tl.constexpr, C: tl.constexpr, TILE: tl.constexpr, DEPTH: tl.constexpr,
        PRECISION: tl.constexpr, CLIP: tl.constexpr,
    ):  # fmt: skip
        """Program (b, h): every chunk of the span; W/S pointers hold the start state, and get the end state.

        A chunk of C tokens is held in a tile of TILE ≥ C columns; columns past C (and past the span's
        end) are padding.

        Layer shapes: depth 1 is [D, D]; deeper memories are [HID, D], ([HID, HID],) [D, HID]. Pointers
        of layers beyond DEPTH are placeholders and never touched. Activations are held feature-major,
        [features, C] (one column per token), so every product is state @ activation or activation @
        activation: the state is the register operand of the tensor-core products and only chunk-sized
        tiles are staged in shared memory.
        """
        pid = tl.program_id(0)
        first = pid.to(tl.int64) * length  # int64: B·H·T·d can pass 2³¹ on long spans
        tokens = tl.arange(0, TILE)
        feats = tl.arange(0, D)
        later = tokens[:, None] <= tokens[None, :]  # [earlier, later]: the causal mask, transposed
        last = tokens == C - 1
        if DEPTH == 1:
            w0 = _load_tile(w0_ptr, pid, D, D)
            s0 = _load_tile(s0_ptr, pid, D, D)
        else:
            w0 = _load_tile(w0_ptr, pid, HID, D)
            s0 = _load_tile(s0_ptr, pid, HID, D)
            if DEPTH == 2:
                w1 = _load_tile(w1_ptr, pid, D, HID)
                s1 = _load_tile(s1_ptr, pid, D, HID)
            else:
                w1 = _load_tile(w1_ptr, pid, HID, HID)
                s1 = _load_tile(s1_ptr, pid, HID, HID)
                w2 = _load_tile(w2_ptr, pid, D, HID)
                s2 = _load_tile(s2_ptr, pid, D, HID)

        for start in tl.range(0, length, C):
            tok = start + tokens
            valid = (tokens < C) & (tok < length)
            # Padding tokens get zero gates and come after every valid one: c is lower-triangular, so they
            # never reach a valid token, and the chunk end reads column C − 1 (`last`). A chunk cut short
            # by the span's end is never committed.
            gate = first + tok
            theta = tl.load(theta_ptr + gate, mask=valid, other=0.0).to(tl.float32)
            log_eta = tl.load(log_eta_ptr + gate, mask=valid, other=0.0).to(tl.float32)
            log_keep = tl.load(log_keep_ptr + gate, mask=valid, other=0.0).to(tl.float32)
            act = gate[None, :] * D + feats[:, None]
            q = tl.load(q_ptr + act, mask=valid[None, :], other=0.0).to(tl.float32)
            k = tl.load(k_ptr + act, mask=valid[None, :], other=0.0).to(tl.float32)
            v = tl.load(v_ptr + act, mask=valid[None, :], other=0.0).to(tl.float32)

            # Gate coefficients (`chunk_coefficients`), transposed: c_t[i, t] = c_{t,i}. -inf outside
            # the causal triangle before exp gives exact zeros, and every exponent is ≤ 0.
            log_e = tl.cumsum(log_eta, 0)  # log E_t
            log_b = tl.cumsum(log_keep, 0)  # log β_t
            keep_t = tl.exp(tl.where(later, log_b[None, :] - log_b[:, None], float("-inf")))  # [s, t] β_t/β_s
            mom_t = tl.exp(tl.where(later, log_e[None, :] - log_e[:, None], float("-inf")))  # [i, s] E_s/E_i
            c_t = _mm(mom_t, keep_t, PRECISION) * theta[:, None]
            beta = tl.exp(log_b)
            b = tl.sum(keep_t * tl.exp(log_e)[:, None], 0)
            log_e_end = tl.sum(log_eta, 0)
            m = tl.exp(log_e_end - log_e) * theta  # θ_i E_n / E_i
            c_end = tl.sum(tl.where(last[None, :], c_t, 0.0), 1)  # c_{n,i}
            b_end = tl.sum(tl.where(last, b, 0.0), 0)
            beta_end = tl.exp(tl.sum(log_keep, 0))
            e_end = tl.exp(log_e_end)
            full = start + C <= length  # a partial last chunk is read but not committed

            # Forward of M₀ on the keys, the hand-written backward of ½‖M₀(k) − v‖², and the read. With
            # CLIP, each token's δ's are scaled so that ‖u_i‖² = Σ_l ‖δ_i^l‖² ‖a_i^{l−1}‖² ≤ τ².
            if DEPTH == 1:
                err = _mm(w0, k, PRECISION) - v
                surprise = 0.5 * _sq(err)
                if CLIP:
                    err = err * _clip_scale(_sq(err) * _sq(k), grad_clip)[None, :]
                y = _read_layer(q, w0, s0, k, err, c_t, beta, b, PRECISION)
                if full:
                    w0, s0 = _commit_layer(w0, s0, err, k, c_end, m, beta_end, b_end, e_end, PRECISION)
            elif DEPTH == 2:
                z0 = _mm(w0, k, PRECISION)
                a0 = _silu(z0)
                err = _mm(w1, a0, PRECISION) - v
                d0 = _mm(tl.trans(w1), err, PRECISION) * _silu_grad(z0)
                surprise = 0.5 * _sq(err)
                if CLIP:
                    scale = _clip_scale(_sq(err) * _sq(a0) + _sq(d0) * _sq(k), grad_clip)[None, :]
                    err, d0 = err * scale, d0 * scale
                r = _silu(_read_layer(q, w0, s0, k, d0, c_t, beta, b, PRECISION))
                y = _read_layer(r, w1, s1, a0, err, c_t, beta, b, PRECISION)
                if full:
                    w0, s0 = _commit_layer(w0, s0, d0, k, c_end, m, beta_end, b_end, e_end, PRECISION)
                    w1, s1 = _commit_layer(w1, s1, err, a0, c_end, m, beta_end, b_end, e_end, PRECISION)
            else:
                z0 = _mm(w0, k, PRECISION)
                a0 = _silu(z0)
                z1 = _mm(w1, a0, PRECISION)
                a1 = _silu(z1)
                err = _mm(w2, a1, PRECISION) - v
                d1 = _mm(tl.trans(w2), err, PRECISION) * _silu_grad(z1)
                d0 = _mm(tl.trans(w1), d1, PRECISION) * _silu_grad(z0)
                surprise = 0.5 * _sq(err)
                if CLIP:
                    norm_sq = _sq(err) * _sq(a1) + _sq(d1) * _sq(a0) + _sq(d0) * _sq(k)
                    scale = _clip_scale(norm_sq, grad_clip)[None, :]
                    err, d1, d0 = err * scale, d1 * scale, d0 * scale
                r = _silu(_read_layer(q, w0, s0, k, d0, c_t, beta, b, PRECISION))
                r = _silu(_read_layer(r, w1, s1, a0, d1, c_t, beta, b, PRECISION))
                y = _read_layer(r, w2, s2, a1, err, c_t, beta, b, PRECISION)
                if full:
                    w0, s0 = _commit_layer(w0, s0, d0, k, c_end, m, beta_end, b_end, e_end, PRECISION)
                    w1, s1 = _commit_layer(w1, s1, d1, a0, c_end, m, beta_end, b_end, e_end, PRECISION)
                    w2, s2 = _commit_layer(w2, s2, err, a1, c_end, m, beta_end, b_end, e_end, PRECISION)
            tl.store(y_ptr + act, y, mask=valid[None, :])
            tl.store(surprise_ptr + gate, surprise, mask=valid)

        if DEPTH == 1:
            _store_tile(w0_ptr, pid, w0, D, D)
            _store_tile(s0_ptr, pid, s0, D, D)
        else:
            _store_tile(w0_ptr, pid, w0, HID, D)
            _store_tile(s0_ptr, pid, s0, HID, D)
            if DEPTH == 2:
                _store_tile(w1_ptr, pid, w1, D, HID)
                _store_tile(s1_ptr, pid, s1, D, HID)
            else:
                _store_tile(w1_ptr, pid, w1, HID, HID)
                _store_tile(s1_ptr, pid, s1, HID, HID)
                _store_tile(w2_ptr, pid, w2, D, HID)
                _store_tile(s2_ptr, pid, s2, D, HID)

    @triton.jit
    def _read_kernel(
        x_ptr, w0_ptr, w1_ptr, w2_ptr, y_ptr, length,
        D: tl.constexpr, HID: tl.constexpr, BLOCK: tl.constexpr, DEPTH: tl.constexpr,
        PRECISION: tl.constexpr,
    ):  # fmt: skip
        """M(x) with fixed weights for one block of tokens (axis 0, the long one) of one (b, h) (axis 1).

        Feature-major like the recurrence: the weights are the register operand of each product.
        """
        pid = tl.program_id(1)
        tok = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = tok < length
        act = (pid.to(tl.int64) * length + tok)[None, :] * D + tl.arange(0, D)[:, None]
        x = tl.load(x_ptr + act, mask=valid[None, :], other=0.0).to(tl.float32)
        if DEPTH == 1:
            y = _mm(_load_tile(w0_ptr, pid, D, D), x, PRECISION)
        else:
            x = _silu(_mm(_load_tile(w0_ptr, pid, HID, D), x, PRECISION))
            if DEPTH == 3:
                x = _silu(_mm(_load_tile(w1_ptr, pid, HID, HID), x, PRECISION))
                y = _mm(_load_tile(w2_ptr, pid, D, HID), x, PRECISION)
            else:
                y = _mm(_load_tile(w1_ptr, pid, D, HID), x, PRECISION)
        tl.store(y_ptr + act, y, mask=valid[None, :])


def _check_state(weights: list[Tensor], momentum: list[Tensor], batch_heads: tuple[int, int], head_dim: int,
                 device: torch.device) -> int:  # fmt: skip
    """Validate the per-layer state (SPEC 2: float32, [B, H, d_out, d_in]); returns the hidden width."""
    depth = len(weights)
    if depth == 0:
        raise TritonUnsupported("the memory has no layers")
    if momentum is not None and len(momentum) != depth:
        raise TritonUnsupported(f"{depth} weight tensors but {len(momentum)} momentum tensors")
    hidden = weights[0].shape[-2] if depth > 1 else head_dim
    widths = [head_dim] + [hidden] * (depth - 1) + [head_dim]
    for layer, w in enumerate(weights):
        expected = (*batch_heads, widths[layer + 1], widths[layer])
        tensors = [w] if momentum is None else [w, momentum[layer]]
        for t in tensors:
            if tuple(t.shape) != expected:
                raise TritonUnsupported(f"layer {layer} state is {tuple(t.shape)}, expected {expected}")
            if t.dtype != torch.float32:
                raise TritonUnsupported(f"memory state must be float32, got {t.dtype}")
            if t.device != device:
                raise TritonUnsupported(f"memory state is on {t.device}, activations on {device}")
    return hidden


def _check_activations(name: str, t: Tensor) -> None:
    if t.dtype not in _FLOAT_ACTIVATIONS:
        raise TritonUnsupported(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")


def memory_recurrence_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    log_eta: Tensor,
    log_keep: Tensor,
    weights: list[Tensor],
    momentum: list[Tensor],
    chunk_size: int,
    grad_clip: float = 0.0,
    input_precision: str = DEFAULT_PRECISION,
) -> RecurrenceResult:
    """The chunked recurrence of `memory_recurrence_chunked`, forward only; see `RecurrenceResult`.

    y and surprise come back in float32 whatever the activation dtype. Raises `TritonUnsupported`
    (a ValueError) for configurations the kernel does not cover, so a dispatcher can fall back.
    `input_precision` is `tl.dot`'s: "tf32x3" (default, ≈ float32), "tf32" (faster, ~1e-3 relative).
    """
    if triton is None:
        raise TritonUnsupported("triton is not installed")
    if q.dim() != 4:
        raise TritonUnsupported(f"q must be [B, H, T, d], got shape {tuple(q.shape)}")
    batch, heads, length, head_dim = q.shape
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise TritonUnsupported(f"{name} has shape {tuple(t.shape)}, q has {tuple(q.shape)}")
    for name, t in (("theta", theta), ("log_eta", log_eta), ("log_keep", log_keep)):
        if t.shape != q.shape[:-1]:
            raise TritonUnsupported(f"{name} has shape {tuple(t.shape)}, expected {tuple(q.shape[:-1])}")
    named = {"q": q, "k": k, "v": v, "theta": theta, "log_eta": log_eta, "log_keep": log_keep}
    for name, t in named.items():
        _check_activations(name, t)
        if t.device != q.device:
            raise TritonUnsupported(f"{name} is on {t.device}, q on {q.device}")
    hidden = _check_state(weights, momentum, (batch, heads), head_dim, q.device)
    depth = len(weights)
    problem = _config_problem("recurrence", head_dim, hidden, depth, chunk_size, q.device)
    if problem:
        raise TritonUnsupported(problem)

    # The kernel reads the start state from these buffers and overwrites them with the end state.
    w_out = [w.detach().contiguous().clone() for w in weights]
    s_out = [s.detach().contiguous().clone() for s in momentum]
    y = torch.empty(batch, heads, length, head_dim, dtype=torch.float32, device=q.device)
    surprise = torch.empty(batch, heads, length, dtype=torch.float32, device=q.device)
    if length == 0 or batch * heads == 0:
        return RecurrenceResult(y, w_out, s_out, surprise)
    state = [t for pair in zip(w_out, s_out) for t in pair]
    state += [state[0]] * (2 * MAX_DEPTH - len(state))  # placeholders for the layers a shallow memory lacks
    # num_stages=1: pipelining the chunk loop would prefetch the next chunk's q/k/v, but it doubled shared
    # memory and carried extra copies of the state (TRITON_NOTES.md); a chunk is a chain of dependent
    # matmuls, so a prefetch could hide little.
    with _launching("recurrence", head_dim, hidden, depth, chunk_size, q.device):
        _recurrence_kernel[(batch * heads,)](
            q.detach().contiguous(), k.detach().contiguous(), v.detach().contiguous(),
            theta.detach().contiguous(), log_eta.detach().contiguous(), log_keep.detach().contiguous(),
            *state, y, surprise, length, float(grad_clip),
            D=head_dim, HID=hidden, C=chunk_size, TILE=_tile(chunk_size), DEPTH=depth, PRECISION=input_precision,
            CLIP=grad_clip > 0, num_warps=_num_warps(head_dim, hidden, depth, chunk_size), num_stages=1,
        )  # fmt: skip
    return RecurrenceResult(y, w_out, s_out, surprise)


def mlp_read_triton(
    weights: list[Tensor], queries: Tensor, block: int | None = None, input_precision: str = DEFAULT_PRECISION
) -> Tensor:
    """M(q) with fixed weights (MAC's segment read), queries [B, H, T, d] → float32 [B, H, T, d].

    One program per `block` tokens of one (b, h); by default 64, fewer for a wide memory (activation tiles
    ≤ 8192 floats: wider tiles spilled more registers on sm_90, TRITON_NOTES.md).
    """
    if triton is None:
        raise TritonUnsupported("triton is not installed")
    if queries.dim() != 4:
        raise TritonUnsupported(f"queries must be [B, H, T, d], got shape {tuple(queries.shape)}")
    batch, heads, length, head_dim = queries.shape
    _check_activations("queries", queries)
    hidden = _check_state(weights, None, (batch, heads), head_dim, queries.device)
    if block is None:
        block = max(16, min(64, 8192 // (hidden if len(weights) > 1 else head_dim)))
    problem = _config_problem("read", head_dim, hidden, len(weights), block, queries.device)
    if problem:
        raise TritonUnsupported(problem)
    y = torch.empty(batch, heads, length, head_dim, dtype=torch.float32, device=queries.device)
    if length == 0 or batch * heads == 0:
        return y
    w = [t.detach().contiguous() for t in weights]
    w += [w[0]] * (MAX_DEPTH - len(w))
    with _launching("read", head_dim, hidden, len(weights), block, queries.device):
        _read_kernel[(triton.cdiv(length, block), batch * heads)](
            queries.detach().contiguous(), *w, y, length,
            D=head_dim, HID=hidden, BLOCK=block, DEPTH=len(weights), PRECISION=input_precision,
            num_warps=_num_warps(head_dim, hidden, len(weights)),
        )  # fmt: skip
    return y
