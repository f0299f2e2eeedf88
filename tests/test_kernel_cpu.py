"""The inference CPU path against the token-loop reference and the chunked dual form (SPEC 2, 2b),
and its C chunk steps against its torch ones."""

import threading

import pytest
import torch
from test_memory_recurrence import random_inputs

from titans_cli.kernels import memory_cpu, memory_recurrence_chunked, memory_recurrence_reference, native
from titans_cli.kernels.memory_cpu import memory_recurrence_cpu
from titans_cli.models import neural_memory

from conftest import tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    """These are checks of arithmetic, not of threading: one thread keeps them fast on a busy machine."""
    torch.set_num_threads(1)


def max_error(a, b):
    pairs = [(a.y, b.y), (a.surprise, b.surprise), *zip(a.weights + a.momentum, b.weights + b.momentum)]
    assert all(x.shape == y.shape and x.dtype == y.dtype for x, y in pairs)
    return max(float((x - y).abs().max()) for x, y in pairs)


def relative_error(a, b):
    """Largest |a − b| of each output relative to that output's largest |b|."""
    pairs = [(a.y, b.y), (a.surprise, b.surprise), *zip(a.weights + a.momentum, b.weights + b.momentum)]
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)) for x, y in pairs)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 7, 16])
@pytest.mark.parametrize("length", [13, 40])
def test_matches_token_loop_reference(depth, chunk, length):
    args = random_inputs(depth, length, seed=depth * 100 + chunk * 10 + length)
    with torch.no_grad():
        fast = memory_recurrence_cpu(*args, chunk_size=chunk)
    assert max_error(fast, memory_recurrence_reference(*args, chunk_size=chunk)) <= 1e-8


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("length", [64, 1000])  # 1000: 15 full chunks and a partial one
def test_float32_matches_chunked_at_model_sizes(depth, length):
    args = random_inputs(depth, length, seed=depth, batch=2, heads=4, width=64, dtype=torch.float32)
    with torch.no_grad():
        fast = memory_recurrence_cpu(*args, chunk_size=64)
        slow = memory_recurrence_chunked(*args, chunk_size=64)
    assert relative_error(fast, slow) <= 1e-4


@pytest.mark.parametrize("chunks_per_block", [1, 4, 7])
def test_blocks_of_chunks_do_not_change_the_result(monkeypatch, chunks_per_block):
    """12 chunks (the last one partial) in blocks of 1, 4 or 7 chunks: 7 leaves a shorter last block."""
    args = random_inputs(2, 45, seed=11)  # B·H = 6
    expected = memory_recurrence_chunked(*args, chunk_size=4)
    monkeypatch.setattr(memory_cpu, "_BLOCK_MATRICES", 6 * chunks_per_block)
    assert max_error(memory_recurrence_cpu(*args, chunk_size=4), expected) <= 1e-12


def test_strided_inputs_as_the_model_passes_them():
    """q, k, v as transposed [B, T, H, d] views and gates as permuted views, B > 1."""
    q, k, v, theta, log_eta, log_keep, w, s = random_inputs(3, 30, seed=4, batch=3, heads=2)
    strided = [x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v)]
    gates = [x.permute(2, 0, 1).contiguous().permute(1, 2, 0) for x in (theta, log_eta, log_keep)]
    assert not strided[0].is_contiguous() and not gates[0].is_contiguous()
    fast = memory_recurrence_cpu(*strided, *gates, w, s, chunk_size=8)
    assert max_error(fast, memory_recurrence_chunked(q, k, v, theta, log_eta, log_keep, w, s, 8)) <= 1e-12


def test_span_shorter_than_a_chunk_commits_nothing():
    args = random_inputs(2, 5, seed=6)
    fast = memory_recurrence_cpu(*args, chunk_size=8)
    for given, returned in zip(args[6] + args[7], fast.weights + fast.momentum):
        assert torch.equal(given, returned)
    assert max_error(fast, memory_recurrence_chunked(*args, chunk_size=8)) <= 1e-12


def test_empty_span():
    args = random_inputs(2, 0, seed=1)
    fast = memory_recurrence_cpu(*args, chunk_size=4)
    assert fast.y.shape == (2, 3, 0, 6) and fast.surprise.shape == (2, 3, 0)


def test_continuing_from_a_chunk_boundary_equals_one_call():
    q, k, v, theta, log_eta, log_keep, w, s = random_inputs(2, 37, seed=9)
    spans = [(x[:, :, :16], x[:, :, 16:]) for x in (q, k, v, theta, log_eta, log_keep)]
    first = memory_recurrence_cpu(*(a for a, _ in spans), w, s, chunk_size=8)
    rest = memory_recurrence_cpu(*(b for _, b in spans), first.weights, first.momentum, chunk_size=8)
    whole = memory_recurrence_cpu(q, k, v, theta, log_eta, log_keep, w, s, chunk_size=8)
    assert (torch.cat([first.y, rest.y], 2) - whole.y).abs().max() <= 1e-12
    for a, b in zip(rest.weights + rest.momentum, whole.weights + whole.momentum):
        assert (a - b).abs().max() <= 1e-12


def test_refuses_to_run_where_a_gradient_is_needed():
    """It has no autograd graph: rather than silently cut the outer model's gradients, it raises."""
    args = random_inputs(2, 12, seed=2)
    args[0].requires_grad_(True)
    with pytest.raises(RuntimeError, match="inference-only"):
        memory_recurrence_cpu(*args, chunk_size=4)
    with torch.no_grad():
        under_no_grad = memory_recurrence_cpu(*args, chunk_size=4)
    args[0].requires_grad_(False)
    grad_mode_but_no_grad_inputs = memory_recurrence_cpu(*args, chunk_size=4)
    assert max_error(under_no_grad, grad_mode_but_no_grad_inputs) == 0


def test_model_streams_the_same_with_either_path(monkeypatch):
    """The model's calls (pending chunk redone, strided q/k/v) give the same logits on the CPU path."""
    model = tiny_model("mal")
    tokens = torch.randint(0, 256, (2, 45), generator=torch.Generator().manual_seed(0))

    def stream():
        state, logits = model.init_state(2), []
        for a, b in ((0, 11), (11, 12), (12, 45)):
            out, state = model(tokens[:, a:b], state)
            logits.append(out)
        return torch.cat(logits, 1)

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return memory_recurrence_cpu(*args, **kwargs)

    with torch.no_grad():
        expected = stream()
        monkeypatch.setattr(neural_memory, "memory_recurrence", spy)
        assert (stream() - expected).abs().max() <= 1e-5
    assert calls


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_clipped_matches_token_loop_reference(depth, chunk):
    args = random_inputs(depth, 40, seed=depth + chunk)
    with torch.no_grad():
        fast = memory_recurrence_cpu(*args, chunk_size=chunk, grad_clip=0.5)
        unclipped = memory_recurrence_cpu(*args, chunk_size=chunk)
    assert max_error(fast, unclipped) > 1e-3  # the clip is active on these inputs
    assert max_error(fast, memory_recurrence_reference(*args, chunk_size=chunk, grad_clip=0.5)) <= 1e-8


@pytest.mark.parametrize(
    "batch, heads, width, chunk, inside",
    [(1, 1, 64, 32, 1), (1, 2, 6, 4, 1), (1, 4, 64, 8, 1), (1, 8, 64, 8, 2), (1, 2, 64, 32, 2), (2, 1, 64, 32, 2)],
)
def test_small_recurrences_step_on_one_thread_and_the_count_comes_back(monkeypatch, batch, heads, width, chunk,
                                                                       inside):  # fmt: skip
    """One matrix, or several small ones (≤ 2^18 first-layer multiply-adds per chunk; 4 heads of 64 at C=8
    are exactly that), run on one thread
    (`_chunk_threads`); bigger ones keep torch's count; the caller's count is restored, also on error."""
    torch.set_num_threads(2)
    monkeypatch.setattr(memory_cpu, "native", None)  # the torch steps' rule; the C steps' is tested below
    seen, step = [], memory_cpu._chunk_step

    def counted(*args):
        seen.append(torch.get_num_threads())
        step(*args)

    monkeypatch.setattr(memory_cpu, "_chunk_step", counted)
    args = random_inputs(2, 40, seed=3, batch=batch, heads=heads, width=width, dtype=torch.float32)
    with torch.no_grad():
        memory_recurrence_cpu(*args, chunk_size=chunk)
    assert set(seen) == {inside} and torch.get_num_threads() == 2

    def failing(*args):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(memory_cpu, "_chunk_step", failing)
    with pytest.raises(RuntimeError), torch.no_grad():
        memory_recurrence_cpu(*args, chunk_size=chunk)
    assert torch.get_num_threads() == 2


def test_the_c_steps_are_built():
    """`pip install -e .` compiles kernels/memory_cpu_native.c; without it every step runs in torch."""
    assert memory_cpu.native is not None, "no C extension: install a C compiler and rerun `pip install -e .`"


def c_and_torch_steps(monkeypatch, args, **kwargs):
    """The fused path's result with its C steps and with its torch steps (`_chunk_step`)."""
    with torch.no_grad():
        c_steps = memory_recurrence_cpu(*args, **kwargs)
        monkeypatch.setattr(memory_cpu, "native", None)
        torch_steps = memory_recurrence_cpu(*args, **kwargs)
    return c_steps, torch_steps


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("chunk", [1, 7, 8, 16])
# 6, 9, 10: columns past the 8-wide strips, dots past 8 lanes, odd sizes; 10 and hidden 20 split a 4-row
# tile between Wᵀ and Sᵀ rows in the commit; 13, hidden 26: a 24-wide strip, then single columns; 64,
# hidden 128: 24-, 16- and 8-wide strips, no single columns.
@pytest.mark.parametrize("width", [6, 9, 10, 13, 64])
@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_c_steps_match_torch_steps(monkeypatch, depth, chunk, width, clip):
    """45 tokens: whole chunks committed and a partial last one read, over 2 × 3 matrices. Smaller steps
    (θ/4) than `random_inputs` gives keep 45 unclipped chunks of 1 finite at width 64, depth 3."""
    args = random_inputs(depth, 45, seed=depth + chunk + width, width=width, dtype=torch.float32)
    args[3].mul_(0.25)
    c_steps, torch_steps = c_and_torch_steps(monkeypatch, args, chunk_size=chunk, grad_clip=clip)
    assert relative_error(c_steps, torch_steps) <= 1e-4
    if clip:  # the clip is active on these inputs
        with torch.no_grad():
            assert max_error(torch_steps, memory_recurrence_cpu(*args, chunk_size=chunk)) > 1e-3


def test_c_steps_are_used_and_share_matrices_among_threads(monkeypatch):
    """Six matrices on two threads: every matrix is stepped once per block, torch itself on one thread."""
    torch.set_num_threads(2)
    seen = []

    class Spy:
        MAX_DEPTH = memory_cpu.native.MAX_DEPTH

        @staticmethod
        def steps(*args):
            seen.append((args[4][0], threading.get_ident(), torch.get_num_threads()))
            return native_steps(*args)

    native_steps = memory_cpu.native.steps
    monkeypatch.setattr(memory_cpu, "native", Spy)
    args = random_inputs(2, 40, seed=5, width=16, dtype=torch.float32)
    with torch.no_grad():
        threaded = memory_recurrence_cpu(*args, chunk_size=8, grad_clip=0.5)
    assert len({pointer for pointer, _, _ in seen}) == len(seen) == 6  # one block of 5 chunks
    assert len({thread for _, thread, _ in seen}) == 2 and {count for _, _, count in seen} == {1}
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(memory_cpu, "native", None)
    with torch.no_grad():
        assert relative_error(threaded, memory_recurrence_cpu(*args, chunk_size=8, grad_clip=0.5)) <= 1e-4


@pytest.mark.parametrize("chunks_per_block", [1, 4, 7])
def test_c_steps_over_blocks_and_calls_match_one_torch_call(monkeypatch, chunks_per_block):
    """12 chunks in blocks of 1, 4 or 7 (commits counted per block), and the same span in two calls."""
    args = random_inputs(2, 45, seed=12, dtype=torch.float32)
    monkeypatch.setattr(memory_cpu, "_BLOCK_MATRICES", 6 * chunks_per_block)
    with torch.no_grad():
        first = memory_recurrence_cpu(*(x[:, :, :20] for x in args[:6]), *args[6:], chunk_size=4)
        second = memory_recurrence_cpu(*(x[:, :, 20:] for x in args[:6]), first.weights, first.momentum, chunk_size=4)
    c_steps, torch_steps = c_and_torch_steps(monkeypatch, args, chunk_size=4)
    assert relative_error(c_steps, torch_steps) <= 1e-4
    joined = type(second)(torch.cat([first.y, second.y], 2), second.weights, second.momentum,
                          torch.cat([first.surprise, second.surprise], 2))  # fmt: skip
    assert relative_error(joined, torch_steps) <= 1e-4


def test_float64_steps_stay_in_torch(monkeypatch):
    """The C steps are float32: a float64 recurrence steps in torch (`_chunk_step`), a float32 one does not."""
    called = []
    monkeypatch.setattr(memory_cpu, "_chunk_step", lambda *a: called.append(1))
    args = random_inputs(1, 8, seed=1, batch=1, heads=2, dtype=torch.float32)
    with torch.no_grad():
        memory_recurrence_cpu(*args, chunk_size=8)
        assert called == []
        memory_recurrence_cpu(*(x.double() for x in args[:6]), [w.double() for w in args[6]],
                              [s.double() for s in args[7]], chunk_size=8)  # fmt: skip
    assert called == [1]


def test_c_extension_only_on_x86_64_with_avx2(monkeypatch):
    """The extension is built for AVX2 and FMA (setup.py): where torch finds no AVX2 it is not imported (its
    first vector instruction would kill the process), nor on other architectures, and the steps run in torch."""
    assert native.native_module() is memory_cpu.native is native.native  # this machine: built and runnable
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert native.native_module() is None
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert native.native_module() is native.native
    monkeypatch.setattr(native.platform, "machine", lambda: "aarch64")  # built there, not yet measured
    assert native.native_module() is None


def test_run_parts_runs_every_part_once_on_separate_threads_and_raises():
    seen = []
    barrier = threading.Barrier(3, timeout=10)  # all three parts must be running at once to pass it

    def work(part):
        barrier.wait()
        seen.append((part, threading.get_ident()))

    native.run_parts(work, 3)
    assert sorted(p for p, _ in seen) == [0, 1, 2] and len({t for _, t in seen}) == 3
    assert dict(seen)[0] == threading.get_ident()

    def failing(part):
        if part == 1:
            raise ValueError("part 1")

    with pytest.raises(ValueError, match="part 1"):
        native.run_parts(failing, 2)


def test_side_by_side_runs_the_works_at_once_in_the_callers_grad_mode_on_a_share_of_the_threads():
    torch.set_num_threads(2)
    barrier = threading.Barrier(2, timeout=10)  # both works must be running at once to pass it

    def work(name):
        def run():
            barrier.wait()
            return name, torch.is_grad_enabled(), torch.get_num_threads()

        return run

    with torch.no_grad():
        assert native.side_by_side(work("a"), work("b")) == [("a", False, 1), ("b", False, 1)]
    assert native.side_by_side(work("a"), work("b")) == [("a", True, 1), ("b", True, 1)]
    assert torch.get_num_threads() == 2

    def failing():
        raise ValueError("the second work")

    with pytest.raises(ValueError, match="the second work"):
        native.side_by_side(lambda: None, failing)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    "matrices, width, hidden, dtype, choice, expected",
    [
        (1, 128, 256, torch.float32, "auto", True),  # dna-tiny, one stream: one matrix
        (2, 64, 128, torch.float32, "auto", True),  # text-tiny, one stream: two small ones (2^17)
        (2, 128, 256, torch.float32, "auto", False),  # dna-tiny, two streams: 2^19, worth two threads
        (1, 128, 256, torch.float32, "cpu", True),
        (1, 128, 256, torch.float32, "torch", False),  # the plain torch forms throughout
        (1, 128, 256, torch.float64, "auto", False),  # torch steps
    ],
)
def test_recurrence_fits_one_core_where_the_c_steps_would_step_it_on_one(monkeypatch, matrices, width, hidden,
                                                                        dtype, choice, expected):  # fmt: skip
    from titans_cli.kernels import recurrence_fits_one_core

    monkeypatch.setenv("TITANS_KERNEL", choice)
    cpu = torch.device("cpu")
    assert recurrence_fits_one_core(matrices, 8, width, hidden, 2, dtype, cpu) is expected
    monkeypatch.setattr(memory_cpu, "native", None)  # no C extension: torch steps
    assert recurrence_fits_one_core(matrices, 8, width, hidden, 2, dtype, cpu) is False
    monkeypatch.setenv("TITANS_KERNEL", "auto")
    assert recurrence_fits_one_core(1, 8, width, hidden, 2, torch.float32, torch.device("meta")) is False


@pytest.mark.parametrize("key_input", [False, True])
def test_mag_reads_attention_beside_a_one_core_memory_with_the_same_result(monkeypatch, key_input):
    """MAG's branches run side by side where the memory steps on one core (one stream, one head) and
    torch has two threads; the stream is the same as with the branches in turn."""
    from titans_cli.models import blocks

    torch.set_num_threads(2)
    options = dict(n_heads=1, kmer_embedding=3, tokenizer="dna", vocab_size=9) if key_input else dict(n_heads=1)
    model = tiny_model("mag", **options)
    tokens = torch.randint(0, 4 if key_input else 256, (1, 45), generator=torch.Generator().manual_seed(1))
    calls = []

    def spy(*works):
        calls.append(len(works))
        return native.side_by_side(*works)

    def stream():
        state, logits = model.init_state(1), []
        for a, b in ((0, 11), (11, 12), (12, 45)):
            out, state = model(tokens[:, a:b], state)
            logits.append(out)
        return torch.cat(logits, 1), state.tensors()

    monkeypatch.setattr(blocks, "side_by_side", spy)
    with torch.no_grad():
        logits, state = stream()
        assert calls == [2] * 6  # 2 layers × 3 calls
        monkeypatch.setattr(neural_memory.NeuralMemory, "steps_on_one_core", lambda self, batch: False)
        in_turn, state_in_turn = stream()
    assert calls == [2] * 6
    assert (logits - in_turn).abs().max() <= 1e-5
    assert all((state[k].double() - state_in_turn[k].double()).abs().max() <= 1e-5 for k in state if state[k].numel())
    assert torch.get_num_threads() == 2
