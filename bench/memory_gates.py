"""What each layer's memory learned to do: its gates, averaged over a held-out stream.

    python bench/memory_gates.py --model text-tiny [--tokens 4096] [--needles 8]

Prints a Markdown table per layer: mean θ, η and α over the stream, the memory's time constant 1/α in
tokens (how long it keeps what it wrote) and its step per chunk C·θ/(1 − η). The stream is held-out
haystack text (text models) or a synthetic genome from an evaluation seed (DNA models). With
`--needles N` (text) it reads N held-out single-needle NIAH documents of that length instead and gives
each layer two rows, the needle sentence's bytes and the background's: whether the memory writes
selectively.
"""

from __future__ import annotations

import argparse

import torch

from titans_cli.evaluation.seeds import eval_seed
from titans_cli.model_registry import resolve_model
from titans_cli.models import tokenizer_for
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.tasks import Haystack, make_genome, make_niah
from titans_cli.tasks.niah import needle_spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundled model name or model directory")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--needles", type=int, default=0, help="text: read N NIAH documents, split the rows")
    args = parser.parse_args()
    model = resolve_model(args.model).load().eval()
    cfg = model.config
    if args.needles and cfg.tokenizer == "dna":
        parser.error("--needles reads NIAH documents: a text model only")
    streams: list[tuple[bytes, torch.Tensor]] = []  # (stream, which of its bytes belong to a needle)
    if cfg.tokenizer == "dna":
        genome = make_genome(args.tokens, eval_seed(0, "gates")).sequence
        streams.append((genome, torch.zeros(args.tokens, dtype=torch.bool)))
    elif not args.needles:
        text = Haystack("eval").text(args.tokens, 0).encode()[: args.tokens]
        streams.append((text, torch.zeros(args.tokens, dtype=torch.bool)))
    for i in range(args.needles):
        example = make_niah(args.tokens, eval_seed(0, "gates", i), "single", "number", split="eval")
        document = example.document.encode()
        needle = torch.zeros(len(document), dtype=torch.bool)
        start, end = needle_spans(example)[0]
        needle[start:end] = True
        streams.append((document, needle))

    gates: dict[int, list[torch.Tensor]] = {}
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]

    def record(layer: int):
        def hook(memory: NeuralMemory, inputs, output) -> None:
            theta, log_eta, log_keep = memory.gate_values(inputs[0])
            one_minus_eta = -log_eta.expm1()  # not 1 − η: η rounds to 1 for open momentum gates
            gates.setdefault(layer, []).append(torch.stack([theta, one_minus_eta, -log_keep.expm1()]).flatten(1))
        return hook

    for layer, memory in enumerate(memories):
        memory.register_forward_hook(record(layer))
    with torch.no_grad():
        for data, _ in streams:
            model(tokenizer_for(cfg.tokenizer).encode(data)[None])
    needle = torch.cat([n.repeat(cfg.n_heads) for _, n in streams])  # the gates' order: stream, head, token
    parts = {"all": torch.ones_like(needle)} if not args.needles else {"needle": needle, "background": ~needle}
    print("| layer | bytes | θ | η | α | 1/α (tokens) | C·θ/(1−η) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for layer in sorted(gates):
        for part, where in parts.items():
            theta, one_minus_eta, alpha = torch.cat(gates[layer], dim=1)[:, where]
            step = (cfg.chunk_size * theta / one_minus_eta).median()
            eta, alpha = 1 - one_minus_eta.mean(), alpha.mean()
            print(f"| {layer} | {part} | {theta.mean():.4f} | {eta:.2f} | {alpha:.4f} | {1 / alpha:.0f} | {step:.2f} |")


if __name__ == "__main__":
    main()
