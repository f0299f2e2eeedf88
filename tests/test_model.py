"""The model's streaming contract (SPEC 4), causality, training and test-time memorisation."""

import random

import pytest
import torch

from titans_cli.kernels import memory_read
from titans_cli.models import TitansConfig, TitansModel, TitansState
from titans_cli.models.layers import RMSNorm
from titans_cli.models.neural_memory import NORM_FLOOR, NeuralMemory, unit

from conftest import VARIANTS, tiny_config, tiny_model


def stream_in_pieces(model, tokens, cuts):
    state = model.init_state(tokens.shape[0])
    logits = []
    for a, b in zip([0, *cuts], [*cuts, tokens.shape[1]]):
        out, state = model(tokens[:, a:b], state)
        logits.append(out)
    return torch.cat(logits, dim=1), state


def options_for(variant: str, name: str) -> dict:
    """The model options a test runs with: the defaults, or the gate and initialisation that let a memory copy
    (BENCHMARKS.md, "Reading a copy out of the memory"); MAC learning from attention keeps the random init."""
    if name == "default":
        return {}
    induction = {} if variant == "mac" else {"memory_init": "induction"}
    return {"memory_gate": "sigmoid", "memory_grad_clip": 1.0, "theta_max": 1.0, **induction}


OPTIONS = ["default", "induction-sigmoid"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("options", OPTIONS)
def test_split_invariance(variant, seed, options):
    assert_split_invariant(tiny_model(variant, **options_for(variant, options)), seed)


@pytest.mark.parametrize("variant", ["lmm", "mag", "mal"])
@pytest.mark.parametrize("init", ["random", "induction"])
def test_split_invariance_with_a_tied_query(variant, init):
    """Under tied_query a call's first key is remade from the conv tail, which keeps one token more."""
    model = tiny_model(variant, tied_query=True, memory_init=init, memory_grad_clip=1.0, induction_span=3,
                       conv_kernel=5)  # fmt: skip
    assert_split_invariant(model, seed=0)


def assert_split_invariant(model: TitansModel, seed: int, sample=None) -> None:
    """Streaming in pieces (random cuts, pieces of one token, cuts inside a chunk) gives the logits and the
    state of one call. `sample(shape)` draws the token ids (default: uniform over the first 256)."""
    length = 317
    torch.manual_seed(seed)
    tokens = sample((2, length)) if sample else torch.randint(0, 256, (2, length))
    rng = random.Random(seed)
    # Random cuts, plus pieces of length 1 and cuts inside a chunk.
    cuts = sorted({*rng.sample(range(1, length), 20), 5, 6, 7, 100, 101})
    with torch.no_grad():
        whole, whole_state = model(tokens)
        split, split_state = stream_in_pieces(model, tokens, cuts)
    assert (whole - split).abs().max() <= 1e-5
    a, b = whole_state.tensors(), split_state.tensors()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        if a[name].numel():
            assert (a[name] - b[name]).abs().max() <= 1e-5, name
    assert whole_state.position == split_state.position == length


@pytest.mark.parametrize("variant, tied", [(v, False) for v in VARIANTS] + [("mag", True), ("lmm", True)])
def test_causality(variant, tied):
    model = tiny_model(variant, tied_query=tied)
    tokens = torch.randint(0, 256, (1, 120))
    with torch.no_grad():
        base, _ = model(tokens)
        for p in (0, 37, 64, 119):
            changed = tokens.clone()
            changed[0, p] = (changed[0, p] + 1) % 256
            out, _ = model(changed)
            assert torch.equal(out[:, :p], base[:, :p]), f"position {p} leaked backwards"
            assert not torch.equal(out[:, p:], base[:, p:])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("options", OPTIONS)
def test_every_parameter_gets_a_finite_gradient(variant, options):
    model = TitansModel(tiny_config(variant, tie_embeddings=variant != "lmm", **options_for(variant, options))).train()
    tokens = torch.randint(0, 256, (2, 50))  # several chunks and segments
    logits, _ = model(tokens)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 260), tokens[:, 1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def test_state_round_trips_through_tensors():
    model = tiny_model("mac")
    tokens = torch.randint(0, 256, (1, 45))
    with torch.no_grad():
        _, state = model(tokens[:, :30])
        rebuilt = TitansState.from_tensors({k: v.clone() for k, v in state.tensors().items()})
        a, _ = model(tokens[:, 30:], state)
        b, _ = model(tokens[:, 30:], rebuilt)
    assert torch.equal(a, b)
    assert rebuilt.position == 30


def test_memory_state_is_float32():
    state = tiny_model("mag").init_state(1)
    assert state.layers[0]["mem.w0"].dtype == torch.float32
    assert state.layers[0]["mem.s1"].dtype == torch.float32


@pytest.mark.parametrize("tie", [True, False])
def test_save_load_round_trip(tmp_path, tie):
    model = tiny_model("mac", tie_embeddings=tie)
    model.save_pretrained(tmp_path / "m")
    loaded = TitansModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    tokens = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        assert torch.equal(model(tokens)[0], loaded(tokens)[0])


def test_config_json_round_trip_and_validation():
    cfg = tiny_config("mal", memory_depth=3)
    assert TitansConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        TitansConfig(chunk_size=64, segment_len=100)
    with pytest.raises(ValueError, match="variant"):
        TitansConfig(variant="xl")
    with pytest.raises(ValueError, match="unknown TitansConfig fields"):
        TitansConfig.from_dict({"d_model": 64, "colour": "red"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_memory_memorises_at_test_time(variant):
    """A random sequence read twice: the inner loss on the second copy is clearly below the first."""
    model = tiny_model(variant)
    copy = torch.randint(0, 256, (1, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        surprise = model.stream(torch.cat([copy, copy], dim=1)).surprise[0]
    first, second = surprise[8:64].mean(), surprise[72:].mean()  # skip the conv warm-up at each start
    assert second < 0.7 * first


@pytest.mark.parametrize("mac_input", ["attention", "segment"])
def test_mac_memory_learns_from_the_configured_input(mac_input):
    """With "segment" the first layer's memory learns from its normalised input tokens, so attention's
    output weights cannot change it; with "attention" (SPEC 3) it learns from the attention output."""
    model = tiny_model("mac", mac_memory_input=mac_input)
    tokens = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        before = model.stream(tokens).state.layers[0]["mem.w0"].clone()
        model.blocks[0].attn.out.weight.mul_(3.0)
        after = model.stream(tokens).state.layers[0]["mem.w0"]
    assert torch.equal(before, after) == (mac_input == "segment")
    with pytest.raises(ValueError, match="mac_memory_input"):
        tiny_config("mac", mac_memory_input="residual")


@pytest.mark.parametrize("cap", [0.0, 0.5, 2.0, 16.0])
def test_max_chunk_step_caps_the_step_per_chunk(cap):
    """With a cap s, C·θ_t/(1 − η_t) ≤ s and θ_t ≤ θ_max for any gate input; 0 is SPEC 2's θ_max·sigmoid."""
    model = tiny_model("mag", theta_max=0.5, max_chunk_step=cap)  # chunk 8
    memory = model.blocks[0].memory
    with torch.no_grad():
        memory.gates.weight.normal_(std=3.0)  # spread the gates over their whole range
        x = torch.randn(2, 200, 32)
        theta, log_eta, _ = memory.gate_values(x)
        g = memory.gates(x).view(2, 200, 3, -1).permute(2, 0, 3, 1).to(theta.dtype)
    one_minus_eta, top = -log_eta.expm1(), torch.sigmoid(g[0])
    if cap == 0:
        torch.testing.assert_close(theta, 0.5 * top)
        return
    step_bound = cap * one_minus_eta / memory.chunk_size
    torch.testing.assert_close(theta, torch.minimum(step_bound, torch.tensor(0.5, dtype=theta.dtype)) * top)
    assert (memory.chunk_size * theta <= cap * one_minus_eta * (1 + 1e-5)).all() and (theta <= 0.5).all()
    # Which side of the ceiling binds: the step cap for small caps, θ_max or the cap (by η) for 16.
    assert (step_bound < 0.5).any() and ((step_bound > 0.5).any() == (cap == 16.0))


@pytest.mark.parametrize("cap", [0.0, 2.0, 4.0])
def test_memory_starts_at_step_1_75_with_or_without_a_cap(cap):
    memory = tiny_model("mag", theta_max=0.5, max_chunk_step=cap).blocks[0].memory
    with torch.no_grad():
        memory.gates.weight.zero_()  # the gates at their biases
        theta, log_eta, _ = memory.gate_values(torch.zeros(1, 1, 32))
    step = memory.chunk_size * theta / -log_eta.expm1()
    torch.testing.assert_close(step, torch.full_like(step, 1.75))
    with pytest.raises(ValueError, match="max_chunk_step"):
        tiny_config("mac", max_chunk_step=-1.0)


@pytest.mark.parametrize("variant, span, tied", [("lmm", 1, False), ("mac-segment", 1, False), ("lmm", 3, False),
                                                 ("mag", 5, False), ("mag", 5, True)])  # fmt: skip
def test_induction_init_keys_look_back_over_the_span(variant, span, tied):
    """memory_init "induction": k_{t+1} = q_t exactly; v_t depends on token t alone, q_t on tokens
    t − span + 1 … t and k_t on t − span … t − 1, also when the stream continues from a conv tail; MAC's read
    query starts as the key projection. The random initialisation has none of this (but for the tie)."""
    for init in ("random", "induction"):
        model = tiny_model(variant, memory_init=init, memory_grad_clip=1.0, conv_kernel=span + 2, induction_span=span,
                           tied_query=tied)  # fmt: skip
        memory = model.blocks[0].memory
        x = torch.randn(1, 20, 32)
        tail = memory.projections(torch.randn(1, 7, 32), memory.init_state(1)["mem.conv"])[3]  # a stream's tail
        changed = x.clone()
        changed[0, 5] += 1.0
        with torch.no_grad():
            before, after = (memory.projections(t, tail)[:3] for t in (x, changed))
        induction = init == "induction"
        q, k, _ = before
        assert torch.allclose(q[:, :, :-1], k[:, :, 1:]) == (induction or tied)
        for name, old, new, first, count in zip("qkv", before, after, (5, 6, 5), (span, span, 1)):
            differs = (old - new).abs().amax(dim=(0, 1, 3)) > 0  # per position
            assert differs[first : first + count].all(), name
            assert (differs.sum().item() == count) == induction, name  # only those positions move
        if variant.startswith("mac"):
            w_k = memory.qkv.weight.chunk(3)[1]
            assert torch.equal(model.blocks[0].read_query.weight, w_k) == induction


@pytest.mark.parametrize("init", ["random", "induction"])
def test_tied_query_is_the_next_tokens_key(init):
    """tied_query: q_t = k_{t+1} exactly for any weights (random, induction, after a training step), also
    across a call boundary: the query of a call's last token is the key of the next call's first token."""
    model = tiny_model("mag", tied_query=True, memory_init=init, memory_grad_clip=1.0, induction_span=3,
                       conv_kernel=5).train()  # fmt: skip
    memory = model.blocks[0].memory
    assert memory.qkv.out_features == 2 * 32  # no W_Q of its own
    logits, _ = model(torch.randint(0, 256, (1, 40)))
    logits.square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad.sign()  # any change of W_K and the taps keeps the tie
    x = torch.randn(1, 30, 32)
    with torch.no_grad():
        q, k, _, _ = memory.projections(x, memory.init_state(1)["mem.conv"])
        first_q, _, _, tail = memory.projections(x[:, :17], memory.init_state(1)["mem.conv"])
        _, second_k, _, _ = memory.projections(x[:, 17:], tail)
    assert torch.equal(q[:, :, :-1], k[:, :, 1:])
    torch.testing.assert_close(first_q[:, :, -1], second_k[:, :, 0])
    with pytest.raises(ValueError, match="tied_query"):
        tiny_config("mac-segment", tied_query=True)


def test_tie_query_converts_trained_looking_weights():
    """NeuralMemory.tie_query on random weights (W_Q ≠ W_K, unrelated query taps): the tied memory's k_t is the
    untied k_t and its q_t the untied k_{t+1}, once the untied key's weight on its own token is zeroed (the
    one term a tied key cannot have)."""
    untied = tiny_model("mag").blocks[0].memory
    tied = tiny_model("mag", tied_query=True).blocks[0].memory
    inner = untied.n_heads * untied.head_dim
    with torch.no_grad():
        untied.conv.weight[inner : 2 * inner, :, -1] = 0.0
        qkv, conv = NeuralMemory.tie_query(untied.qkv.weight, untied.conv.weight)
        tied.qkv.weight.copy_(qkv)
        tied.conv.weight.copy_(conv)
        x = torch.randn(1, 20, 32)
        _, k_old, v_old, _ = untied.projections(x, untied.init_state(1)["mem.conv"])
        q_new, k_new, v_new, _ = tied.projections(x, tied.init_state(1)["mem.conv"])
    torch.testing.assert_close(k_new, k_old)
    torch.testing.assert_close(q_new[:, :, :-1], k_old[:, :, 1:])
    torch.testing.assert_close(v_new, v_old)


def test_induction_config_is_checked():
    for invalid, overrides, problem in (("lmm", {"conv_kernel": 1, "memory_grad_clip": 1.0}, "conv_kernel"),
                                        ("lmm", {"induction_span": 4, "memory_grad_clip": 1.0}, "conv_kernel"),
                                        ("lmm", {"induction_span": 0, "memory_grad_clip": 1.0}, "induction_span"),
                                        ("mac-segment", {"induction_span": 2, "memory_grad_clip": 1.0}, "span 1"),
                                        ("lmm", {}, "memory_grad_clip"),
                                        ("mac", {"memory_grad_clip": 1.0}, "mac_memory_input")):  # fmt: skip
        with pytest.raises(ValueError, match=problem):
            tiny_config(invalid, memory_init="induction", **overrides)
    with pytest.raises(ValueError, match="memory_init"):
        tiny_config("lmm", memory_init="zeros")


@torch.no_grad()
def nearest_values_read(model: TitansModel, tokens: torch.Tensor) -> torch.Tensor:
    """A one-head, one-layer memory writes `tokens` [1, T]; at each position, the token whose value vector
    (centred over all 256) is nearest to what the query there reads back."""
    block, memory = model.blocks[0], model.blocks[0].memory
    tail = memory.init_state(1)["mem.conv"]
    x = block.norm_mem(model.embed(tokens))
    weights = memory.weights(memory(x, memory.init_state(1))[1])
    read = memory_read(weights, memory.projections(x, tail)[0])[0, 0]
    values = memory.projections(block.norm_mem(model.embed(torch.arange(256)[None])), tail)[2][0, 0]
    return (read @ torch.nn.functional.normalize(values - values.mean(0), dim=-1).T).argmax(-1)


def test_induction_memory_returns_the_next_token_at_initialisation():
    """Having read 17 distinct tokens, an untrained "induction" memory answers a query for one of them with
    the value of the token that followed it (nearest of all 256 tokens' values, centred): 0.20–0.80 of 15
    queries over these 8 sequences, 0.42 on average. A randomly initialised one: none (chance 1/256)."""
    recalled = {"random": [], "induction": []}
    for seed in range(8):
        tokens = torch.randperm(256, generator=torch.Generator().manual_seed(seed))[:17][None]
        for init in recalled:
            model = tiny_model("lmm", memory_init=init, memory_grad_clip=1.0, n_heads=1, n_layers=1, theta_max=1.0)
            nearest = nearest_values_read(model, tokens)
            recalled[init].append((nearest[:15] == tokens[0, 1:16]).sum().item())  # 16 written: two whole chunks
    assert min(recalled["induction"]) >= 2 and sum(recalled["induction"]) >= 0.3 * 8 * 15, recalled
    assert max(recalled["random"]) <= 1, recalled


@pytest.mark.parametrize("variant", ["lmm", "mag", "mac-segment"])
def test_induction_init_trains_from_a_fresh_stream_with_bounded_gradients(variant):
    """A fresh stream's first key under the induction init reads only the zero conv tail. Normalising that
    zero vector with F.normalize's default floor multiplied its gradient by 1e12 (outer gradient norms of
    1e7–1e13 on a 512-byte text batch); with the floor at NORM_FLOOR the gradient is of ordinary size."""
    torch.manual_seed(0)
    model = tiny_model(variant, memory_init="induction", memory_grad_clip=1.0, theta_max=0.25,
                       max_chunk_step=2.0).train()  # fmt: skip
    tokens = torch.randint(0, 256, (2, 48))
    state = model.init_state(2)
    first_key = model.blocks[0].memory.projections(model.embed(tokens), state.layers[0]["mem.conv"])[1][:, :, 0]
    assert first_key.abs().max() == 0
    logits, _ = model(tokens[:, :-1], state)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    norm = torch.sqrt(sum(p.grad.norm() ** 2 for p in model.parameters() if p.grad is not None))
    assert torch.isfinite(norm) and norm < 100, norm
    tiny, x = torch.full((4,), 1e-5), torch.randn(3, 16)
    assert torch.allclose(unit(tiny), tiny / NORM_FLOOR) and torch.allclose(unit(x), x / x.norm(dim=-1, keepdim=True))


def test_induction_span_tells_apart_contexts_that_share_the_last_token():
    """Eight triples a_i x y_i share their middle token x. A bigram key (span 1) files every y_i under x, so
    a query at x reads their blend: at most 1 of the 8 y_i per sequence here (chance among the 8: 1). A
    span of 3 keys y_i on (y_{i−1}, a_i, x): 22 of 64 over these 8 sequences, against 3 for span 1."""
    recalled = {1: [], 3: []}
    for seed in range(8):
        perm = torch.randperm(256, generator=torch.Generator().manual_seed(seed))
        middle, first, last = perm[0], perm[1:9], perm[9:17]
        tokens = torch.stack([first, middle.expand(8), last], dim=1).reshape(1, -1)
        for span in recalled:
            torch.manual_seed(seed)
            model = tiny_model("lmm", memory_init="induction", memory_grad_clip=1.0, n_heads=1, n_layers=1,
                               theta_max=1.0, conv_kernel=span + 1, induction_span=span)  # fmt: skip
            nearest = nearest_values_read(model, tokens)
            recalled[span].append((nearest[1::3] == last).sum().item())  # the queries at each x
    assert max(recalled[1]) <= 1 and sum(recalled[3]) >= 16, recalled


@pytest.mark.parametrize("gate", ["silu", "sigmoid"])
def test_memory_gate_activation(gate):
    """With the gate's weights at zero, σ passes half of the normalised read and SiLU none of it."""
    memory = tiny_model("lmm", memory_gate=gate).blocks[0].memory
    y = torch.randn(1, 2, 5, 16)
    with torch.no_grad():
        memory.out_gate.weight.zero_()
        out = memory.read_out(y, torch.randn(1, 5, 32))
        expected = memory.out_proj(memory.out_norm(y).transpose(1, 2).reshape(1, 5, 32))
    torch.testing.assert_close(out, 0.5 * expected if gate == "sigmoid" else torch.zeros_like(out))
    with pytest.raises(ValueError, match="memory_gate"):
        tiny_config("lmm", memory_gate="relu")


def test_rms_norm_is_the_written_out_formula():
    """x / √(mean(x²) + ε) · w over the last dimension, values and gradients (F.rms_norm does it fused)."""
    norm = RMSNorm(6, eps=1e-3).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    x.data[0, 0] = 1e-4  # where ε dominates
    written_out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-3) * norm.weight
    torch.testing.assert_close(norm(x), written_out, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(3, 4, 6, dtype=torch.float64)
    grads = torch.autograd.grad(norm(x), (x, norm.weight), upstream)
    expected = torch.autograd.grad(written_out, (x, norm.weight), upstream)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
