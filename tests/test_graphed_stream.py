"""GraphedStream: CUDA-graph replays of aligned blocks must give exactly the eager stream.

The rotary offset that lets one captured graph serve every position is checked on any device; the
graphs themselves need a GPU.
"""

import itertools
from typing import ClassVar

import pytest
import torch

from titans_cli.models import TitansState, graphed_stream
from titans_cli.models.attention import _Attention
from titans_cli.models.graphed_stream import GraphedStream, inference_stream

from conftest import tiny_model

ON_GPU = torch.cuda.is_available()


def _flat(state: TitansState) -> list[torch.Tensor]:
    return [t for layer in state.layers for _, t in sorted(layer.items())]


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_position_offset_moves_the_rotary_positions(variant):
    model = tiny_model(variant)
    tokens = torch.randint(0, 256, (2, 160))
    with torch.no_grad():
        state = model.stream(tokens[:, :96]).state
        want = model.stream(tokens[:, 96:], state)
        moved = TitansState(state.position - 64, state.layers)  # 64: whole chunks, segments and more
        unshifted = model.stream(tokens[:, 96:], moved)
        attentions = [m for m in model.modules() if isinstance(m, _Attention)]
        for m in attentions:
            m.position_offset = torch.tensor(64)
        got = model.stream(tokens[:, 96:], moved)
        for m in attentions:
            m.position_offset = None
    assert not torch.equal(unshifted.logits, want.logits)  # the absolute position matters...
    assert torch.equal(got.logits, want.logits)  # ...and the offset restores it exactly
    assert all(torch.equal(a, b) for a, b in zip(_flat(got.state), _flat(want.state)))


class _RunsEagerly:
    """Stands in for a captured graph on the CPU: `replay` runs the model and records where it was asked to."""

    replays: ClassVar[list[tuple[int, int]]] = []

    def __init__(self, model):
        self.model = model

    @classmethod
    def capture(cls, model, tokens, state, offset):
        return cls(model)

    def replay(self, tokens, state):
        self.replays.append((state.position, tokens.shape[1]))
        return self.model.stream(tokens, state)


@pytest.mark.parametrize("variant", ["mac", "lmm"])
def test_blocks_replay_on_aligned_positions_and_the_rest_runs_eagerly(variant, monkeypatch):
    monkeypatch.setattr(graphed_stream, "_Captured", _RunsEagerly)
    monkeypatch.setattr(graphed_stream, "GRAPH_TOKENS", 40)  # unit lcm(8, 16) = 16, so blocks of 48
    monkeypatch.setattr(_RunsEagerly, "replays", [])
    model = tiny_model(variant)
    streamer = GraphedStream(model)
    tokens = torch.randint(0, 256, (2, 400))
    cuts = [0, 5, 60, 155, 203, 400]  # unaligned starts, calls shorter than a block or than one after alignment
    with torch.no_grad():
        want = model.stream(tokens)
        state, logits = None, []
        for a, b in itertools.pairwise(cuts):
            out = streamer.stream(tokens[:, a:b], state)
            state = out.state
            logits.append(out.logits)
    assert _RunsEagerly.replays == [(64, 48), (208, 48), (256, 48), (304, 48), (352, 48)]
    assert state.position == 400 and (torch.cat(logits, 1) - want.logits).abs().max() <= 1e-5
    for a, b in zip(_flat(state), _flat(want.state)):
        assert a.shape == b.shape and (a.numel() == 0 or (a - b).abs().max() <= 1e-5)


def test_captured_layouts_are_bounded_least_recently_used_first(monkeypatch):
    monkeypatch.setattr(graphed_stream, "_Captured", _RunsEagerly)
    monkeypatch.setattr(graphed_stream, "GRAPH_TOKENS", 16)
    model = tiny_model("lmm")
    streamer = GraphedStream(model)
    with torch.no_grad():
        for batch in (1, 2, 3, 4, 1, 5):  # batch 1 is used again before batch 5 needs a slot
            streamer.stream(torch.randint(0, 256, (batch, 16)))
        model.memory_learning = False  # a frozen memory is another graph: θ and α are baked in
        streamer.stream(torch.randint(0, 256, (1, 16)))
    batches = [(layout[0][0], layout[1]) for layout in streamer.graphs]
    assert batches == [(4, True), (1, True), (5, True), (1, False)]


def test_a_layout_that_cannot_be_captured_streams_eagerly(monkeypatch):
    monkeypatch.setattr(graphed_stream._Captured, "capture", classmethod(lambda cls, *args: None))
    monkeypatch.setattr(graphed_stream, "GRAPH_TOKENS", 16)
    model = tiny_model("mac")
    tokens = torch.randint(0, 256, (1, 96))
    streamer = GraphedStream(model)
    with torch.no_grad():
        got, want = streamer.stream(tokens), model.stream(tokens)
    assert list(streamer.graphs.values()) == [None]
    assert (got.logits - want.logits).abs().max() <= 1e-5


def test_inference_stream_is_the_model_itself_off_cuda():
    model = tiny_model()
    assert inference_stream(model) is model


@pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need a GPU; the offset test above runs everywhere")
@pytest.mark.parametrize("variant", ["mac", "mac-segment", "mag"])
def test_gpu_replays_match_the_eager_stream(variant):
    # chunk 16 and head width 16: the Triton kernels run inside the graph
    model = tiny_model(variant, chunk_size=16, segment_len=32).cuda()
    tokens = torch.randint(0, 256, (2, 4000), device="cuda")
    streamer = GraphedStream(model)
    assert streamer.block == 1024
    with torch.no_grad():
        want_a = model.stream(tokens[:, :37])
        want_b = model.stream(tokens[:, 37:2500], want_a.state)  # unaligned start: head, two blocks, tail
        want_c = model.stream(tokens[:, 2500:], want_b.state)  # one more block, at another position
        got_a = streamer.stream(tokens[:, :37])
        got_b = streamer.stream(tokens[:, 37:2500], got_a.state)
        got_c = streamer.stream(tokens[:, 2500:], got_b.state)
        # Outputs are copies: a later replay of the same graph must leave an earlier result alone.
        first = streamer.stream(tokens[:, :1024], want_c.state)  # exactly one block, at an aligned position
        kept = [first.logits.clone(), *(t.clone() for t in _flat(first.state))]
        streamer.stream(tokens[:, 1024:2048], first.state)
    assert all(torch.equal(a, b) for a, b in zip([first.logits, *_flat(first.state)], kept))
    # one layout, so one graph, replayed at four positions
    assert len(streamer.graphs) == 1 and None not in streamer.graphs.values()
    for got, want in ((got_a, want_a), (got_b, want_b), (got_c, want_c)):
        assert got.state.position == want.state.position
        pairs = [(got.logits, want.logits), (got.surprise, want.surprise), *zip(_flat(got.state), _flat(want.state))]
        for i, (a, b) in enumerate(pairs):  # cuBLAS may pick other kernels under capture: float32 rounding
            assert a.shape == b.shape
            if b.numel():  # MAC's attention cache is empty on a segment boundary
                assert (a - b).abs().max() <= 1e-5 * b.abs().max(), (i, (a - b).abs().max(), b.abs().max())
