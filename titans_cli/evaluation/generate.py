"""Reading through the streaming state and greedy decoding: what `eval` and `ask` do with a model.

A document of any length is fed in pieces, never in one call; the model's split invariance makes that
exact. Generation then continues the same state one token at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from titans_cli.models import TitansConfig, TitansModel, TitansState, Tokenizer

PIECE_TOKENS = 4096


def prompt_ids(config: TitansConfig, tokenizer: Tokenizer, question: str) -> Tensor:
    """The model's prompt template around `question`, as token ids.

    Markers such as <SEP> are special tokens in the template only: in the question they are plain text.
    """
    before, after = config.prompt_template.split("{question}", 1)
    parts = [tokenizer.encode_text(before), tokenizer.encode(question.encode()), tokenizer.encode_text(after)]
    return torch.cat(parts)


def stop_ids(tokenizer: Tokenizer) -> set[int]:
    """EOS, and a newline where the alphabet has one: answers are one line."""
    stops = {tokenizer.eos}
    if b"\n" in tokenizer.symbols:
        stops.add(int(tokenizer.encode(b"\n")[0]))
    return stops


@torch.no_grad()
def read(
    model: TitansModel, tokens: Tensor, state: TitansState | None = None, piece_tokens: int = PIECE_TOKENS
) -> tuple[Tensor, TitansState]:
    """Stream tokens [B, T] (T ≥ 1) through the model in pieces; returns the last position's logits [B, V]."""
    if state is None:
        state = model.init_state(tokens.shape[0])
    logits = None
    for start in range(0, tokens.shape[1], piece_tokens):
        logits, state = model(tokens[:, start : start + piece_tokens], state)
    if logits is None:
        raise ValueError("read() needs at least one token")
    return logits[:, -1].float(), state


@dataclass
class Decoded:
    ids: list[int]  # generated tokens, the stop token excluded
    logprob: float  # sum of log P(token) over the generated tokens, the stop token included when one came
    stopped: bool  # ended on a stop token rather than at the length cap

    @property
    def mean_logprob(self) -> float:
        count = len(self.ids) + self.stopped
        return self.logprob / count if count else 0.0


@torch.no_grad()
def decode(
    model: TitansModel,
    logits: Tensor,
    state: TitansState,
    max_new_tokens: int,
    stops: set[int],
    temperature: float = 0.0,
    top_k: int = 0,
    generators: list[torch.Generator] | None = None,
) -> tuple[list[Decoded], TitansState]:
    """Continue B independent streams (logits [B, V] of their last positions) until each stops or hits the cap.

    temperature 0 is greedy (argmax); otherwise tokens are sampled from softmax(logits / temperature),
    restricted to the top_k most likely when top_k > 0, each row drawing from its own generator (one per
    stream), so a stream's tokens do not depend on which others share its batch. A stream that has stopped
    keeps being fed (its tokens are discarded) so the batch stays one tensor.
    """
    batch = logits.shape[0]
    out = [Decoded([], 0.0, False) for _ in range(batch)]
    for _ in range(max_new_tokens):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if temperature > 0:
            scores = log_probs / temperature
            if top_k > 0:
                kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            probs = scores.softmax(-1).cpu()
            rows = generators or [None] * batch
            tokens = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, rows)]).to(logits.device)
        else:
            tokens = log_probs.argmax(-1)
        chosen = log_probs.gather(1, tokens[:, None])[:, 0].tolist()
        for row, (token, logprob) in enumerate(zip(tokens.tolist(), chosen)):
            if out[row].stopped:
                continue
            out[row].logprob += logprob
            if token in stops:
                out[row].stopped = True
            else:
                out[row].ids.append(token)
        if all(d.stopped for d in out):
            break
        step, state = model(tokens[:, None], state)
        logits = step[:, -1]
    return out, state


def expand_state(state: TitansState, batch: int) -> TitansState:
    """B copies of a one-stream state (every state tensor is batch-first)."""
    return TitansState(state.position, [{k: v.expand(batch, *v.shape[1:]) for k, v in layer.items()}
                                        for layer in state.layers])  # fmt: skip


def select_row(state: TitansState, row: int) -> TitansState:
    """One stream of a batched state (every state tensor is batch-first)."""
    return TitansState(state.position, [{k: v[row : row + 1] for k, v in layer.items()} for layer in state.layers])
