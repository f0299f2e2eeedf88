"""How well a model predicts a needle's value from memory, by document length, memory learning vs frozen.

    python bench/needle_value.py --model DIR [--lengths 512,1024,2048] [--n 12] [--variant multikey] [--no-frozen]
                                 [--only-needles-written]

NIAH documents (7-digit numbers, held-out seeds and background; one needle, or four with distinct keys
for `--variant multikey`) are read with the question and the model's own answer (`answer_text`: the
value, or the quoted needle sentence) teacher-forced. For the asked value's digits it prints bits per
byte (uniform over digits: 3.32), how many answers have every digit as the argmax and, for multikey, how
many answers' most likely first digit is that of another needle but not the asked one (the model read
the wrong fact), with the memory learning as it reads and with it frozen at its initial weights (the
no-memory ablation of `titans eval --no-memory`). Finer than `titans eval niah`, which needs every byte of
a generated answer right. `--only-needles-written` is an oracle: θ_t = 0 outside the needle sentences
(the question and answer are written as usual), so the memory holds the needles and nothing of the
background: what selective writing would give this model's trained read-out. One thread.
"""

from __future__ import annotations

import argparse
import math

import torch

from titans_cli.evaluation.answers import answer_text
from titans_cli.evaluation.generate import prompt_ids
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.model_registry import resolve_model
from titans_cli.models import TitansModel, tokenizer_for
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.tasks import QAExample, make_niah
from titans_cli.tasks.niah import needle_spans


def write_only(model: TitansModel, where: torch.Tensor) -> None:
    """Every memory of `model` writes (θ_t > 0) only at the positions `where` [T] marks; None undoes it."""
    for memory in (m for m in model.modules() if isinstance(m, NeuralMemory)):
        if "gate_values" in vars(memory):
            del memory.gate_values  # back to the class's method
        if where is not None:
            def masked(x: torch.Tensor, memory: NeuralMemory = memory) -> tuple[torch.Tensor, ...]:
                theta, log_eta, log_keep = NeuralMemory.gate_values(memory, x)
                return theta * where[: theta.shape[-1]].to(theta.dtype), log_eta, log_keep

            memory.gate_values = masked


def read_to_value(model: TitansModel, example: QAExample) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens a model reads before the asked value (document, question, and the model's own answer up to
    the value: nothing, or the quoted sentence's start) and the value's tokens."""
    tokenizer = tokenizer_for(model.config.tokenizer)
    answer = answer_text(model.config, example)
    before_value = answer[: answer.rindex(example.answer)]
    prefix = torch.cat([tokenizer.encode(example.document.encode()),
                        prompt_ids(model.config, tokenizer, example.question),
                        tokenizer.encode(before_value.encode())])  # fmt: skip
    return prefix, tokenizer.encode(example.answer.encode())


@torch.no_grad()
def value_scores(model: TitansModel, length: int, n: int, variant: str, oracle: bool) -> tuple[float, int, int]:
    """(bits per value byte, answers whose every value byte is the argmax, answers whose likeliest first
    digit belongs to another needle only) over n documents."""
    bits, count, exact, other = 0.0, 0, 0, 0
    for i in range(n):
        example = make_niah(length, eval_seed(0, "niah", variant, length, i), variant, "number", split="eval")
        prefix, value = read_to_value(model, example)
        ids = torch.cat([prefix, value])[None]
        if oracle:
            where = torch.zeros(ids.shape[1], dtype=torch.bool)
            where[len(example.document) :] = True  # the question and the answer (documents are ASCII)
            for start, end in needle_spans(example):
                where[start:end] = True
            write_only(model, where)
        logits, _ = model(ids[:, :-1], model.init_state(1))
        logprobs = torch.log_softmax(logits[0, len(prefix) - 1 :].float(), -1)
        bits -= logprobs.gather(-1, value[:, None]).sum().item() / math.log(2)
        count += len(value)
        exact += bool((logprobs.argmax(-1) == value).all())
        first = chr(int(logprobs[0].argmax()))
        other += first != example.answer[0] and any(first == v[0] for v in example.meta["values"][1:])
    write_only(model, None)
    return bits / count, exact, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lengths", default="512,1024,2048")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--variant", choices=["single", "multikey"], default="single")
    parser.add_argument("--no-frozen", action="store_true", help="skip the frozen-memory columns")
    parser.add_argument("--only-needles-written", action="store_true", help="oracle: θ_t = 0 off the needles")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model).load().eval()
    print("| document bytes | value bits/byte, memory | all digits argmax | another needle's | frozen memory "
          "| all digits argmax |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for length in (int(x) for x in args.lengths.split(",")):
        model.memory_learning = True
        bits, exact, other = value_scores(model, length, args.n, args.variant, args.only_needles_written)
        row = f"| {length:,} | {bits:.2f} | {exact}/{args.n} | {other}/{args.n} |"
        if args.no_frozen:
            print(row + " | |", flush=True)
            continue
        model.memory_learning = False
        frozen_bits, frozen_exact, _ = value_scores(model, length, args.n, args.variant, args.only_needles_written)
        print(row + f" {frozen_bits:.2f} | {frozen_exact}/{args.n} |", flush=True)


if __name__ == "__main__":
    main()
