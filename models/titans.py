"""`TitansModel`: embedding, a stack of Titans blocks, and the LM head, over a resumable stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from titans_cli.models.blocks import BLOCKS
from titans_cli.models.config import TitansConfig
from titans_cli.models.context_memory import STATE_PREFIX, ContextMemory
from titans_cli.models.kmer_embedding import TAIL_KEY, KmerEmbedding
from titans_cli.models.layers import RMSNorm
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.models.state import TitansState


class StreamOutput(NamedTuple):
    logits: Tensor  # [B, T, vocab]
    state: TitansState
    surprise: Tensor  # [B, T] inner loss ℓ_t(M₀), mean over layers and heads


class TitansModel(nn.Module):
    """`logits, state = model(tokens, state)` continues a stream; any split gives the same result."""

    def __init__(self, config: TitansConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(BLOCKS[config.variant](config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(_init_weights)
        if config.memory_init == "induction":
            for block in self.blocks:
                block.memory.init_induction(config.induction_span, getattr(block, "read_query", None))
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        # Drawn last, so that a model with and without k-mers draws the same initial weights for the rest.
        width = config.n_heads * config.head_dim
        self.kmer_embed = KmerEmbedding(config.kmer_embedding, width) if config.kmer_embedding else None
        self.context_memory = ContextMemory(config) if config.context_span else None

    @property
    def memory_learning(self) -> bool:
        """Whether the long-term memory learns at test time; False is the attention-only ablation."""
        return all(m.learning for m in self.modules() if isinstance(m, (NeuralMemory, ContextMemory)))

    @memory_learning.setter
    def memory_learning(self, enabled: bool) -> None:
        for m in self.modules():
            if isinstance(m, (NeuralMemory, ContextMemory)):
                m.learning = enabled

    def init_state(self, batch_size: int = 1) -> TitansState:
        layers = [block.init_state(batch_size) for block in self.blocks]
        if self.kmer_embed is not None:  # the input's own state rides in the first layer's dict
            layers[0][TAIL_KEY] = self.kmer_embed.init_tail(batch_size, self.embed.weight.device)
        if self.context_memory is not None:
            layers[0].update(self.context_memory.init_state(batch_size, self.embed.weight.device))
        return TitansState(0, layers)

    def forward(self, tokens: Tensor, state: TitansState | None = None) -> tuple[Tensor, TitansState]:
        out = self.stream(tokens, state)
        return out.logits, out.state

    def stream(self, tokens: Tensor, state: TitansState | None = None) -> StreamOutput:
        """Read tokens [B, T] from `state` on (a fresh stream when None)."""
        if state is None:
            state = self.init_state(tokens.shape[0])
        layer_states = list(state.layers)
        first = dict(layer_states[0])
        key_input, tail = self.key_input(tokens, first.pop(TAIL_KEY, None))
        context_state = {k: first.pop(k) for k in list(first) if k.startswith(STATE_PREFIX)}
        layer_states[0] = first
        extra = () if key_input is None else (key_input,)  # MAC blocks take no key input
        x = self.embed(tokens)
        layers, surprise = [], torch.zeros(tokens.shape, device=tokens.device)
        for block, layer_state in zip(self.blocks, layer_states):
            x, layer_state, layer_surprise = block(x, layer_state, state.position, *extra)
            layers.append(layer_state)
            surprise = surprise + layer_surprise.float() / len(self.blocks)
        if tail is not None:
            layers[0] = {**layers[0], TAIL_KEY: tail}
        hidden = self.norm(x)
        logits = self.head(hidden)
        if self.context_memory is not None:
            bonus, context_state = self.context_memory(tokens, hidden, context_state)
            width = bonus.shape[-1]  # the alphabet's ids come first in the vocabulary
            logits = torch.cat([logits[..., :width] + bonus, logits[..., width:]], dim=-1)
            layers[0] = {**layers[0], **context_state}
        return StreamOutput(logits, TitansState(state.position + tokens.shape[1], layers), surprise)

    def key_input(self, tokens: Tensor, kmer_tail: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """What every memory adds to its keys for tokens [B, T] (the k-mer vectors), and the next k-mer tail;
        (None, None) without `kmer_embedding`."""
        if self.kmer_embed is None:
            return None, None
        if kmer_tail is None:
            raise ValueError(f"this model has kmer_embedding {self.kmer_embed.k}: its stream state needs "
                             f"'{TAIL_KEY}' (start streams with init_state)")  # fmt: skip
        return self.kmer_embed(tokens, kmer_tail)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `config.json` and `model.safetensors` (no pickle anywhere)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(self.config.to_json() + "\n")
        save_model(self, str(directory / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> TitansModel:
        directory = Path(directory)
        config = TitansConfig.from_dict(json.loads((directory / "config.json").read_text()))
        model = cls(config)
        load_model(model, str(directory / "model.safetensors"), device=str(device))
        return model.to(device).eval()


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
