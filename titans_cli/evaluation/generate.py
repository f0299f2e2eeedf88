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


@dataclass
class Generation:
    ids: list[int]  # generated tokens, the stop token excluded
    text: str  # their bytes, decoded leniently
    stopped: bool  # ended on a stop token rather than at the length cap
    state: TitansState  # after the prompt and every generated token


def prompt_ids(config: TitansConfig, tokenizer: Tokenizer, question: str) -> Tensor:
    """The model's prompt template around `question`, as token ids (specials such as <SEP> included)."""
    return tokenizer.encode_text(config.prompt_template.replace("{question}", question))


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


@torch.no_grad()
def greedy_generate(
    model: TitansModel, logits: Tensor, state: TitansState, max_new_tokens: int, stops: set[int]
) -> tuple[list[int], bool, TitansState]:
    """Continue one stream (logits [1, V] of its last position) by argmax until a stop token or the cap."""
    ids: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits[0].argmax())
        if token in stops:
            return ids, True, state
        ids.append(token)
        step, state = model(torch.tensor([[token]], device=logits.device), state)
        logits = step[:, -1].float()
    return ids, False, state


def answer(
    model: TitansModel, tokenizer: Tokenizer, state: TitansState, question: str, max_new_tokens: int = 64
) -> Generation:
    """Ask `question` of a stream that has read its document (state of batch 1): prompt, then greedy decode."""
    device = next(model.parameters()).device
    logits, state = read(model, prompt_ids(model.config, tokenizer, question)[None].to(device), state)
    ids, stopped, state = greedy_generate(model, logits, state, max_new_tokens, stop_ids(tokenizer))
    return Generation(ids, tokenizer.decode(ids).decode("utf-8", errors="replace"), stopped, state)


def select_row(state: TitansState, row: int) -> TitansState:
    """One stream of a batched state (every state tensor is batch-first)."""
    return TitansState(state.position, [{k: v[row : row + 1] for k, v in layer.items()} for layer in state.layers])
