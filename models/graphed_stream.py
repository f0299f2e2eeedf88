"""Streaming on a GPU through CUDA graphs: aligned blocks captured once, then replayed.

A single stream on a GPU is bound by launches, not by the kernels: one 128-token MAC segment issues about
a thousand small operations (BENCHMARKS.md, "GPU"). `GraphedStream.stream` has the contract of
`TitansModel.stream`. It cuts each call at the boundaries of the model's alignment unit (a multiple of
both chunk and segment) and runs every whole `block` (GRAPH_TOKENS, rounded up to the unit) that starts on
one as a replay of a graph captured once per layout (token shape, state tensors, memory learning on or
off, kernel choice); the rest, and calls shorter than a block, run eagerly. Ingest feeds whole blocks at
block boundaries, so nearly all of it replays. A layout whose state changes shape across a block, or
whose capture fails, stays eager. A graph holds the model's parameters by address: change the weights in
place if you must, but a model moved or cast after capture needs a new `GraphedStream`.

Inside an aligned block the only thing that depends on the absolute position is the rotary angle (masks
compare positions, and a segment's control flow repeats): the graph is captured with each attention's
`position_offset` pointing at one device scalar, and a replay writes (position − captured position) there.
Replays match the eager stream (tests/test_graphed_stream.py on a GPU; the offset itself on any device).
"""

from __future__ import annotations

import math
import os
import warnings

import torch
from torch import Tensor

from titans_cli.kernels import kernel_choice
from titans_cli.models.attention import _Attention
from titans_cli.models.state import TitansState
from titans_cli.models.titans import StreamOutput, TitansModel

GRAPH_TOKENS = 1024  # tokens per replay, rounded up to the alignment unit
MAX_GRAPHS = 4  # layouts (batch sizes, mostly) kept captured, least recently used dropped; each has its own pool


def inference_stream(model: TitansModel) -> TitansModel | GraphedStream:
    """What ingest and score stream through (both have `.stream`): graphs on CUDA unless TITANS_CUDA_GRAPHS=0."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    return GraphedStream(model) if on_cuda and os.environ.get("TITANS_CUDA_GRAPHS", "1") != "0" else model


class GraphedStream:
    """`TitansModel.stream` for inference on CUDA, replaying captured graphs over aligned blocks."""

    def __init__(self, model: TitansModel):
        cfg = model.config
        self.model = model
        # a context memory's chunk too, so that its pending tokens have one shape at every block boundary
        self.unit = math.lcm(cfg.chunk_size, cfg.segment_len, cfg.context_chunk if cfg.context_span else 1)
        self.block = self.unit * math.ceil(GRAPH_TOKENS / self.unit)
        self.offset = torch.zeros((), dtype=torch.int64, device=next(model.parameters()).device)
        self.graphs: dict[tuple, _Captured | None] = {}  # by layout; None: stays eager

    @torch.no_grad()
    def stream(self, tokens: Tensor, state: TitansState | None = None) -> StreamOutput:
        if state is None:
            state = self.model.init_state(tokens.shape[0])
        length, start = tokens.shape[1], 0
        if length < self.block:
            return self.model.stream(tokens, state)
        outputs = []
        while start < length:
            head = -state.position % self.unit
            if head == 0 and length - start >= self.block:
                outputs.append(self._block(tokens[:, start : start + self.block], state))
            else:  # up to the next aligned position, or the tail
                outputs.append(self.model.stream(tokens[:, start : start + (head or length - start)], state))
            state = outputs[-1].state
            start += outputs[-1].logits.shape[1]
        if len(outputs) == 1:
            return outputs[0]
        logits = torch.cat([o.logits for o in outputs], dim=1)
        return StreamOutput(logits, state, torch.cat([o.surprise for o in outputs], dim=1))

    def _block(self, tokens: Tensor, state: TitansState) -> StreamOutput:
        layout = (tuple(tokens.shape), self.model.memory_learning, kernel_choice(), *_layout(state))
        if layout in self.graphs:
            self.graphs[layout] = self.graphs.pop(layout)  # most recently used last
        else:
            if len(self.graphs) == MAX_GRAPHS:
                del self.graphs[next(iter(self.graphs))]
            self.graphs[layout] = _Captured.capture(self.model, tokens, state, self.offset)
        captured = self.graphs[layout]
        return self.model.stream(tokens, state) if captured is None else captured.replay(tokens, state)


class _Captured:
    """One graph of `model.stream` over a fixed layout, with its static inputs, outputs and offset."""

    def __init__(self, graph, tokens: Tensor, state: TitansState, out: StreamOutput, offset: Tensor):
        self.graph, self.tokens, self.state, self.out, self.offset = graph, tokens, state, out, offset

    @classmethod
    def capture(cls, model: TitansModel, tokens: Tensor, state: TitansState, offset: Tensor) -> _Captured | None:
        static_tokens = tokens.clone()
        static_state = TitansState(state.position, [{k: v.clone() for k, v in d.items()} for d in state.layers])
        attentions = [m for m in model.modules() if isinstance(m, _Attention)]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(tokens.device):
            # Warm up off the capture stream (Triton compiles, the allocator settles), as torch.cuda.graph asks.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                warm = model.stream(static_tokens, static_state)
            torch.cuda.current_stream().wait_stream(side)
            if _layout(warm.state) != _layout(static_state):  # it must keep its layout to be replayed into
                return None
            try:
                for m in attentions:
                    m.position_offset = offset
                with torch.cuda.graph(graph):
                    out = model.stream(static_tokens, static_state)
            except RuntimeError as error:  # an operation that cannot be captured: this layout stays eager
                warnings.warn(f"CUDA graph capture failed, streaming eagerly: {error}", stacklevel=4)
                return None
            finally:
                for m in attentions:
                    m.position_offset = None
        return cls(graph, static_tokens, static_state, out, offset)

    def replay(self, tokens: Tensor, state: TitansState) -> StreamOutput:
        with torch.cuda.device(tokens.device):
            self.tokens.copy_(tokens)
            for static, layer in zip(self.state.layers, state.layers):
                for name, t in layer.items():
                    static[name].copy_(t)
            self.offset.fill_(state.position - self.state.position)
            self.graph.replay()
            # The outputs live in the graph's memory and the next replay overwrites them: hand out copies.
            layers = [{k: v.clone() for k, v in d.items()} for d in self.out.state.layers]
        new_state = TitansState(state.position + tokens.shape[1], layers)
        return StreamOutput(self.out.logits.clone(), new_state, self.out.surprise.clone())


def _layout(state: TitansState) -> tuple:
    return tuple((name, tuple(t.shape), t.dtype) for layer in state.layers for name, t in sorted(layer.items()))
