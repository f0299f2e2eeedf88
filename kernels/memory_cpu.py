"""The memory recurrence for inference on CPU (SPEC 2b, 8): the chunked dual form, laid out for throughput.

Same closed form and contract as `memory_recurrence_chunked`, without autograd. On a 2-core CPU the
matmuls are small (C × d × e·d per head), so time goes as much to the glue between them as to the
arithmetic; this file removes the glue:

- For the torch steps, everything that does not depend on the memory weights is computed for a block
  of chunks at once: the gate coefficients c, β, b, m (SPEC 2b) and, since the first layer reads the
  raw queries and keys, that layer's retrieval and update operands [β⊙q | b⊙q], −c⊙(q kᵀ),
  [c_end⊙k | m⊙k]. The C steps form both chunk by chunk, in cache, on all threads.
- Per layer the state is one buffer [Wᵀ; Sᵀ] of shape [2·d_in, d_out], so the dual form

      W_t z = β_t W₀ z + b_t S₀ z − Σ_{i≤t} c_{t,i} δ_i (a_i · z)

  for all the queries of a chunk is one matmul [β⊙r | b⊙r] @ [Wᵀ; Sᵀ] plus one accumulated
  (−c⊙(r aᵀ)) @ δ, and the chunk-end update of W and S together is one in-place baddbmm.
- [B, H] is one batch dimension, blocks are chunk-major so a chunk's operands are contiguous, and
  every buffer is allocated once per call and written with out= (fresh multi-MB tensors cost more in
  page faults than the arithmetic that fills them).

The loop over chunks stays sequential: each chunk's gradients are taken at its start weights. It
runs in C (memory_cpu_native.c, one call per block and matrix, matrices shared among threads) for
float32, else in torch (`_chunk_step`, the C steps' reference).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.nn import functional as F

from titans_cli.kernels.native import native, run_parts, torch_threads
from titans_cli.kernels.recurrence import RecurrenceResult

# Weight-independent work runs on blocks of this many chunk × [B·H] matrices: enough to batch the
# per-token recurrence of the coefficients, small enough that a block's operands stay in cache.
_BLOCK_MATRICES = 128


class _Block:
    """Chunk-major operands of up to `g` chunks: inputs and gates and, for the torch steps, the gate
    coefficients and first-layer operands (the C steps form both per chunk, in cache, on all threads).

    Allocated once per call and refilled per block with out= ops; for the torch steps `chunks[j]` holds
    chunk j's views, also made once (the C steps take addresses instead, and a block's views cost ms).
    """

    def __init__(self, ref: Tensor, g: int, n: int, chunk: int, width: int, d_out: int, grad_clip: float,
                 torch_steps: bool):  # fmt: skip
        m = g * n
        self.n, self.chunk, self.width, self.grad_clip = n, chunk, width, grad_clip
        self.q, self.k, self.v = (ref.new_empty(m, chunk, width) for _ in range(3))
        self.gates = ref.new_empty(3, m, chunk)  # θ, log η, log(1 − α)
        self.y = ref.new_empty(g, n, chunk, d_out)
        self.surprise = ref.new_empty(g, n, chunk)
        self.torch_steps = torch_steps
        if torch_steps:
            self._torch_step_operands(m)

    def _torch_step_operands(self, m: int) -> None:
        """The torch steps' coefficients and first-layer operands, batched over the block, and each chunk's
        views of them."""
        n, chunk, width = self.n, self.chunk, self.width
        self.cum = self.q.new_empty(2, m, chunk)  # log E_t, log β_t
        self.e, self.keep, self.beta, self.neg_m = (self.q.new_empty(m, chunk) for _ in range(4))
        self.acc = self.q.new_empty(m, chunk, chunk + 1)  # [−c | b], see `coefficients`
        self.key_norm = self.q.new_empty(m, chunk)  # ‖k‖²/τ², for gradient clipping
        self.left1 = self.q.new_empty(m, chunk, 2 * width)  # [β⊙q | b⊙q]
        self.neg_a1 = self.q.new_empty(m, chunk, chunk)  # −c⊙(q kᵀ)
        self.scaled1 = self.q.new_empty(m, chunk, 2 * width)  # [−c_end⊙k | −m⊙k]
        neg_c, b = self.acc[..., :chunk], self.acc[..., chunk:]
        views = {
            "k": self.k, "v": self.v, "key_norm": self.key_norm, "left1": self.left1, "neg_a1": self.neg_a1,
            "scaled1_t": self.scaled1.transpose(1, 2),
            "neg_c": neg_c, "beta": self.beta[..., None], "b": b,  # −c_{t,i}, β_t, b_t
            "neg_c_end": neg_c[:, -1, :, None], "neg_m": self.neg_m[..., None],  # −c_{n,i}, −θ_iE_n/E_i
            "beta_n": self.beta[:, -1:, None], "b_n": b[:, -1:], "e_n": self.e[:, -1:, None],
        }  # fmt: skip
        self.chunks = [dict(zip(views, parts)) for parts in zip(*(t.split(n) for t in views.values()))]

    def fill(self, q, k, v, theta, log_eta, log_keep, start: int, stop: int) -> None:
        """Load chunks [start, stop) of the span; past its end all is zero (θ = 0: nothing leaks back)."""
        m, w = (stop - start) * self.n, self.width
        for src, dst in ((q, self.q), (k, self.k), (v, self.v), (theta, self.gates[0]),
                         (log_eta, self.gates[1]), (log_keep, self.gates[2])):  # fmt: skip
            _move(src, dst[:m], start * self.chunk, self.chunk, into_chunks=True)
        if not self.torch_steps:
            return
        self.coefficients(m)
        q, k, neg_c, b = self.q[:m], self.k[:m], self.acc[:m, :, :-1], self.acc[:m, :, -1:]
        if self.grad_clip:
            torch.linalg.vecdot(k, k, out=self.key_norm[:m]).div_(self.grad_clip**2)
        torch.mul(q, self.beta[:m, :, None], out=self.left1[:m, :, :w])
        torch.mul(q, b, out=self.left1[:m, :, w:])
        torch.bmm(q, k.transpose(1, 2), out=self.neg_a1[:m]).mul_(neg_c)
        torch.mul(k, neg_c[:, -1, :, None], out=self.scaled1[:m, :, :w])
        torch.mul(k, self.neg_m[:m, :, None], out=self.scaled1[:m, :, w:])

    def coefficients(self, m: int) -> None:
        """Gate coefficients of the first m chunk × [B·H] rows (SPEC 2b).

        c and b are summed by their recurrences over t, c_{t,i} = (1 − α_t) c_{t−1,i} + θ_i E_t/E_i
        and b_t = (1 − α_t) b_{t−1} + E_t, one step for all rows at a time. That needs only the
        E_t/E_i ratios (log space, each ≤ 1; the upper triangle is zeroed after the exp, which
        discards any overflow there), not `chunk_coefficients`' β_t/β_s matrix and C×C product.
        c and m are kept negated, the sign they enter every matmul with.
        """
        n = self.chunk
        theta, keep, e, acc = self.gates[0, :m], self.keep[:m], self.e[:m], self.acc[:m]
        log_e, log_b = torch.cumsum(self.gates[1:, :m], -1, out=self.cum[:, :m])
        torch.exp(log_e, out=e)
        torch.exp(self.gates[2, :m], out=keep)
        torch.exp(log_b, out=self.beta[:m])
        # Row t of acc starts as [E_t/E_i for i ≤ t | E_t]; the recurrence makes it [c_{t,i}/θ_i | b_t].
        torch.sub(log_e[:, :, None], log_e[:, None, :], out=acc[..., :n]).exp_().tril_()
        acc[..., n].copy_(e)
        for t in range(1, n):
            acc[:, t].addcmul_(acc[:, t - 1], keep[:, t, None])
        neg_theta = theta.neg()
        acc[..., :n].mul_(neg_theta[:, None, :])
        torch.sub(log_e[:, -1:], log_e, out=self.neg_m[:m]).exp_().mul_(neg_theta)


def _move(span: Tensor, chunks: Tensor, offset: int, chunk: int, into_chunks: bool) -> None:
    """Copy between a span [B, H, T(, X)] (tokens from `offset`) and chunk-major [G·B·H, C(, X)].

    Into chunks, positions past the span's end are zeroed; out of them, they are dropped. Only the
    block's own tokens are touched, whatever the span's strides (the model's q is a transposed view).
    """
    batch, heads = span.shape[:2]
    g = chunks.shape[0] // (batch * heads)
    chunks = chunks.view(g, batch, heads, chunk, -1)
    span = span[:, :, offset : offset + g * chunk]
    if span.dim() == 3:  # gates and surprise
        span = span[..., None]
    full, rest = divmod(span.shape[2], chunk)
    pairs = [(span[:, :, : full * chunk].unflatten(2, (full, chunk)).permute(2, 0, 1, 3, 4), chunks[:full])]
    if rest:
        pairs.append((span[:, :, full * chunk :], chunks[full, :, :, :rest]))
    if into_chunks and full < g:
        chunks[full:].zero_()
    for tokens, slots in pairs:
        (slots.copy_(tokens) if into_chunks else tokens.copy_(slots))


class _Plan:
    """Per-call buffers, allocated once per call: per layer ws = [Wᵀ; Sᵀ] and, for the torch steps, δ
    and the per-chunk scratch (the C steps keep their own).

    Views into them are made here too, once, because slicing costs about as much as a small op.
    """

    def __init__(self, ref: Tensor, weights: list[Tensor], momentum: list[Tensor], n: int, chunk: int,
                 torch_steps: bool):  # fmt: skip
        self.depth = len(weights)
        self.ws, self.w, self.s = [], [], []
        for w, s in zip(weights, momentum):
            d_out, d_in = w.shape[-2:]
            ws = ref.new_empty(n, 2 * d_in, d_out)
            ws[:, :d_in].copy_(w.reshape(n, d_out, d_in).transpose(1, 2))
            ws[:, d_in:].copy_(s.reshape(n, d_out, d_in).transpose(1, 2))
            self.ws.append(ws)
            self.w.append(ws[:, :d_in])  # Wᵀ
            self.s.append(ws[:, d_in:])  # Sᵀ
        if torch_steps:
            self._scratch(ref, weights, n, chunk)

    def _scratch(self, ref: Tensor, weights: list[Tensor], n: int, chunk: int) -> None:
        self.delta = [ref.new_empty(n, chunk, w.shape[-2]) for w in weights]
        self.w_t = [w.transpose(1, 2) for w in self.w]
        self.z_out = ref.new_empty(n, chunk, weights[-1].shape[-2])  # last pre-activation on the keys
        hidden = [w.shape[-2] for w in weights[:-1]]

        def per_hidden(times: int) -> list[Tensor]:
            return [ref.new_empty(n, chunk, times * h) for h in hidden]

        # Hidden layers: pre-activation, SiLU and σ' on the keys, the read of the queries, and the
        # operands of the next layer, built per chunk because its inputs depend on the weights.
        self.z, self.act, self.dact, self.read = (per_hidden(1) for _ in range(4))
        self.act_t = [a.transpose(1, 2) for a in self.act]
        self.left, self.scaled = per_hidden(2), per_hidden(2)
        self.left_halves = [(x[..., :h], x[..., h:]) for x, h in zip(self.left, hidden)]
        self.scaled_halves = [(x[..., :h], x[..., h:]) for x, h in zip(self.scaled, hidden)]
        self.scaled_t = [x.transpose(1, 2) for x in self.scaled]
        self.gram = ref.new_empty(n, chunk, chunk)
        # Gradient clipping: ‖u‖²/τ², and ‖δ^l‖² for the hidden layers beside ‖a^l‖² of the current one.
        self.norm_sq, self.part = ref.new_empty(n, chunk), ref.new_empty(self.depth, n, chunk)

    def state(self, shape: tuple[int, int], dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
        """Committed weights and momentum, back in the [B, H, d_out, d_in] layout."""

        def back(x: Tensor) -> Tensor:
            return x.transpose(1, 2).to(dtype, memory_format=torch.contiguous_format).view(
                *shape, x.shape[2], x.shape[1]
            )

        return [back(w) for w in self.w], [back(s) for s in self.s]


def _clip(plan: _Plan, op: dict[str, Tensor], last_sq: Tensor, grad_clip: float) -> None:
    """Scale each token's δ_i^l (all layers) so that ‖u_i‖² = Σ_l ‖δ_i^l‖² ‖a_i^{l−1}‖² is at most τ².

    `last_sq` is ‖δ^L‖² (the surprise) and the block holds ‖k‖²/τ², so the scale min(1, τ/‖u‖) of
    `clip_scale` is rsqrt(max(1, ‖u‖²/τ²)) in a few small ops.
    """
    depth, norm_sq, part = plan.depth, plan.norm_sq, plan.part
    squares = [torch.linalg.vecdot(d, d, out=part[layer]) for layer, d in enumerate(plan.delta[:-1])] + [last_sq]
    torch.mul(squares[0], op["key_norm"], out=norm_sq)
    for layer in range(1, depth):
        a = plan.act[layer - 1]
        norm_sq.addcmul_(squares[layer], torch.linalg.vecdot(a, a, out=part[-1]), value=grad_clip**-2)
    scale = norm_sq.clamp_min_(1.0).rsqrt_()[..., None]
    for delta in plan.delta:
        delta.mul_(scale)


def _chunk_step(
    plan: _Plan, op: dict[str, Tensor], y: Tensor, surprise: Tensor, commit: bool, grad_clip: float
) -> None:
    """One chunk, in place: outputs into y [N, C, d] and surprise [N, C]; ws updated when committed.

    `op` holds this chunk's keys, values, gate coefficients and first-layer operands.
    """
    depth, delta = plan.depth, plan.delta

    # Forward at M₀ on the keys (z^l = a^{l−1} W^{lᵀ}), with SiLU and σ' of every hidden pre-activation.
    a = op["k"]
    for layer in range(depth - 1):
        z, sig, act, dact = plan.z[layer], plan.read[layer], plan.act[layer], plan.dact[layer]
        torch.bmm(a, plan.w[layer], out=z)
        torch.sigmoid(z, out=sig)
        torch.mul(z, sig, out=act)  # SiLU(z) = z·s
        torch.add(sig, act, out=dact).addcmul_(act, sig, value=-1)  # σ'(z) = s + z·s·(1 − s)
        a = act
    torch.bmm(a, plan.w[-1], out=plan.z_out)

    # Backward of ℓ = ½‖M₀(k) − v‖² by hand: δ^L = M₀(k) − v, δ^l = (δ^{l+1} W^{l+1}) ⊙ σ'(z^l).
    torch.sub(plan.z_out, op["v"], out=delta[-1])
    torch.linalg.vecdot(delta[-1], delta[-1], out=surprise)  # the ½ is applied once per block
    for layer in range(depth - 2, -1, -1):
        back = plan.read[layer]  # free again once σ' is known
        torch.bmm(delta[layer + 1], plan.w_t[layer + 1], out=back)
        torch.mul(back, plan.dact[layer], out=delta[layer])
    if grad_clip:
        _clip(plan, op, surprise, grad_clip)

    # Retrieval y_t = M_t(q_t) (SPEC 2b), per layer [β⊙r | b⊙r] @ [Wᵀ; Sᵀ] + (−c⊙(r aᵀ)) @ δ.
    out = y if depth == 1 else plan.read[0]
    torch.bmm(op["left1"], plan.ws[0], out=out).baddbmm_(op["neg_a1"], delta[0])
    for layer in range(1, depth):
        left_w, left_s = plan.left_halves[layer - 1]
        F.silu(out, inplace=True)
        torch.mul(out, op["beta"], out=left_w)
        torch.mul(out, op["b"], out=left_s)
        torch.bmm(out, plan.act_t[layer - 1], out=plan.gram).mul_(op["neg_c"])
        out = y if layer == depth - 1 else plan.read[layer]
        torch.bmm(plan.left[layer - 1], plan.ws[layer], out=out).baddbmm_(plan.gram, delta[layer])
    if not commit:
        return

    # Chunk end (SPEC 2b): Wᵀ ← β_n Wᵀ + b_n Sᵀ − aᵀ(c_end⊙δ) and Sᵀ ← E_n Sᵀ − aᵀ(m⊙δ), in place.
    for layer in range(depth):
        if layer == 0:
            scaled_t = op["scaled1_t"]
        else:
            act, (to_w, to_s) = plan.act[layer - 1], plan.scaled_halves[layer - 1]
            torch.mul(act, op["neg_c_end"], out=to_w)
            torch.mul(act, op["neg_m"], out=to_s)
            scaled_t = plan.scaled_t[layer - 1]
        plan.w[layer].mul_(op["beta_n"]).addcmul_(plan.s[layer], op["b_n"])
        plan.s[layer].mul_(op["e_n"])
        plan.ws[layer].baddbmm_(scaled_t, delta[layer])


def chunk_coefficients_native(theta: Tensor, log_eta: Tensor, log_keep: Tensor) -> tuple[Tensor, ...]:
    """`chunk_coefficients` (memory_chunked.py, its reference) in C, by the C steps' own recurrences over t
    (as `_Block.coefficients`): O(C²) per chunk where the reference's C×C product is O(C³), which at the
    context memory's chunks of 256 was most of its time. Gates [..., n], float32 on CPU, no gradient."""
    n = theta.shape[-1]
    gates = [t.contiguous() for t in (theta, log_eta, log_keep)]
    c = theta.new_empty(*theta.shape, n)
    beta, b, m = (theta.new_empty(theta.shape) for _ in range(3))
    native.coefficients(*(t.data_ptr() for t in (*gates, c, beta, b, m)), theta.numel() // max(n, 1), n)
    return c, beta, b, m


def _native_stepper(plan: _Plan, block: _Block, workers: int) -> Callable[[int, int], None]:
    """`steps(count, commits)`: the block's first `count` chunk steps in C (the first `commits` committed),
    its matrices split among `workers` threads (`run_parts`; the C steps run without the GIL). The buffers
    live for the whole call, so their addresses are taken once, here."""
    dims = (plan.w[0].shape[1], *(w.shape[2] for w in plan.w))
    operands = [block.q, block.k, block.v, *block.gates, block.y[0], block.surprise[0]]
    addresses = [(tuple(ws[i].data_ptr() for ws in plan.ws), tuple(x[i].data_ptr() for x in operands))
                 for i in range(block.n)]  # fmt: skip

    def steps(count: int, commits: int) -> None:
        def part(first: int) -> None:
            for i in range(first, block.n, workers):
                native.steps(dims, block.chunk, block.grad_clip, *addresses[i], block.n, count, commits)

        run_parts(part, workers)

    return steps


def memory_recurrence_cpu(
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
) -> RecurrenceResult:
    """Inference-only chunked recurrence; see `RecurrenceResult`.

    Raises if autograd would need a graph through it (grad mode on and any input requiring grad):
    its in-place buffers have none, and silently dropping the outer model's gradients is worse.
    """
    tensors = [q, k, v, theta, log_eta, log_keep, *weights, *momentum]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError(
            "memory_recurrence_cpu is inference-only; use memory_recurrence_chunked where gradients flow"
        )
    batch, heads, length, _ = q.shape
    if length == 0:
        empty = q.new_zeros(batch, heads, 0, weights[-1].shape[-2])
        return RecurrenceResult(empty, list(weights), list(momentum), q.new_zeros(batch, heads, 0))
    with torch.no_grad():
        return _run(q, k, v, theta, log_eta, log_keep, weights, momentum, chunk_size, grad_clip)


# Up to this many multiply-adds in a chunk's first-layer product (matrices × C × d × hidden: a measure of
# size, not the chunk's whole count) the products are too small for two threads to share:
# bench/chunk_threads.py, BENCHMARKS.md.
_ONE_THREAD_WORK = 2**18


def fits_one_thread(matrices: int, work: int) -> bool:
    """Whether a recurrence's chunk products are too small for two threads to share: one matrix (one
    stream, one head), whose products are single small GEMMs ([C, d] by [d, e·d]) that threads can only
    split, or several small ones (`work`, matrices × C × d × hidden, ≤ _ONE_THREAD_WORK: text-tiny's two
    heads of 64), where each op is over before two threads have shared it. On 2 cores one thread was
    1.06–1.53× faster there and 0.63–0.94× beyond."""
    return matrices == 1 or work <= _ONE_THREAD_WORK


def c_steps_run(dtype: torch.dtype, depth: int) -> bool:
    """Whether the chunk steps run in C (float32, built extension, supported depth) rather than in torch."""
    return native is not None and dtype == torch.float32 and depth <= native.MAX_DEPTH


@contextmanager
def _chunk_threads(matrices: int, work: int, c_steps: bool) -> Iterator[None]:
    """One intra-op thread for a recurrence that fits one (`fits_one_thread`), else torch's own count.
    The C steps share out the matrices among threads of their own, which torch's idle threads would only
    slow, so with them it is one thread always."""
    if fits_one_thread(matrices, work) or c_steps:
        with torch_threads(1):
            yield
    else:
        yield


def _run(q, k, v, theta, log_eta, log_keep, weights, momentum, chunk, grad_clip) -> RecurrenceResult:
    batch, heads, length, width = q.shape
    n, d_out = batch * heads, weights[-1].shape[-2]
    n_chunks, full = -(-length // chunk), length // chunk
    group = min(max(1, _BLOCK_MATRICES // n), n_chunks)
    y = q.new_empty(batch, heads, length, d_out)
    surprise = q.new_empty(batch, heads, length)
    hidden = weights[0].shape[-2]
    c_steps = c_steps_run(q.dtype, len(weights))
    plan = _Plan(q, weights, momentum, n, chunk, torch_steps=not c_steps)
    block = _Block(q, group, n, chunk, width, d_out, grad_clip, torch_steps=not c_steps)
    workers = min(n, torch.get_num_threads())
    with _chunk_threads(n, n * chunk * width * hidden, c_steps):
        native_steps = _native_stepper(plan, block, workers) if c_steps else None
        for start in range(0, n_chunks, group):
            stop = min(start + group, n_chunks)
            block.fill(q, k, v, theta, log_eta, log_keep, start, stop)
            if native_steps:
                native_steps(stop - start, max(0, min(stop, full) - start))
            else:
                for j in range(stop - start):
                    _chunk_step(plan, block.chunks[j], block.y[j], block.surprise[j], start + j < full, grad_clip)
            m = (stop - start) * n
            _move(y, block.y[: stop - start].view(m, chunk, d_out), start * chunk, chunk, False)
            _move(surprise, block.surprise[: stop - start].view(m, chunk), start * chunk, chunk, False)
    w, s = plan.state((batch, heads), weights[0].dtype) if full else (list(weights), list(momentum))
    return RecurrenceResult(y, w, s, surprise.mul_(0.5))
