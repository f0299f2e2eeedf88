"""Does a needle's query find its own key? Cosines between memory queries and keys in multi-key NIAH.

    python bench/key_match.py --model DIR [--length 1024] [--n 10] [--fresh]

Held-out multi-key documents (four needles with distinct keys, one asked) are read with the question and
the start of the model's quoted answer, up to the asked value's first digit. For every memory layer and
head it prints the cosine between the query there and the key each needle's first value digit was
written under: its own needle's (1 if the same context gave the same key) and the other needles'
(their sentences share the template "... for ADJ-NOUN is: "). A read finds the right fact only where its
own key stands clearly above the others. `--fresh` measures the model's preset at initialisation instead
of the trained weights. Needs a quoting model (`answer_style = "quote"`). One thread.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from needle_value import read_to_value

from titans_cli.evaluation.seeds import eval_seed
from titans_cli.model_registry import resolve_model
from titans_cli.models import TitansModel
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.tasks import make_niah
from titans_cli.tasks.niah import needle_spans


@torch.no_grad()
def cosines(model: TitansModel, length: int, n: int) -> dict[tuple[int, int], tuple[list[float], list[float]]]:
    """Per (layer, head): the query's cosine with its own needle's key, and with each other needle's."""
    memories = [m for m in model.modules() if isinstance(m, NeuralMemory)]
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(layer: int):
        def hook(memory: NeuralMemory, args: tuple) -> None:
            x, state, *key_input = args  # MAC passes no key input
            seen[layer] = memory.projections(x, state["mem.conv"], *key_input)[:2]

        return hook

    hooks = [m.register_forward_pre_hook(keep(i)) for i, m in enumerate(memories)]
    found: dict[tuple[int, int], tuple[list[float], list[float]]] = {}
    for i in range(n):
        example = make_niah(length, eval_seed(0, "niah", "multikey", length, i), "multikey", "number", split="eval")
        prefix, _ = read_to_value(model, example)
        model(prefix[None], model.init_state(1))
        # k_t is the key under which token t (here a value's first digit) was written; the query at the
        # last position reads what should follow it.
        spans = zip(needle_spans(example), example.meta["needles"], strict=True)
        digits = [start + s.index(" is: ") + 5 for (start, _), s in spans]
        for layer, (q, k) in seen.items():
            for head in range(q.shape[1]):
                own, *others = (float(q[0, head, -1] @ k[0, head, t]) for t in digits)
                found.setdefault((layer, head), ([], []))[0].append(own)
                found[(layer, head)][1].extend(others)
    for h in hooks:
        h.remove()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="the same config at initialisation")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model).load().eval()
    if args.fresh:
        torch.manual_seed(0)
        model = TitansModel(model.config).eval()
    print("| layer | head | own key | other needles' keys (mean) | own − others |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for (layer, head), (own, others) in sorted(cosines(model, args.length, args.n).items()):
        own_mean, other_mean = statistics.mean(own), statistics.mean(others)
        print(f"| {layer} | {head} | {own_mean:.3f} | {other_mean:.3f} | {own_mean - other_mean:.3f} |")


if __name__ == "__main__":
    main()
