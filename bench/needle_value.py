"""How well a model predicts a needle's value from memory, by document length, memory learning vs frozen.

    python bench/needle_value.py --model DIR [--lengths 512,1024,2048] [--n 12] [--variant multikey] [--no-frozen]

NIAH documents (7-digit numbers, held-out seeds and background; one needle, or four with distinct keys
for `--variant multikey`) are read with the question and the model's own answer (`answer_text`: the
value, or the quoted needle sentence) teacher-forced. For the asked value's digits it prints bits per
byte (uniform over digits: 3.32), how many answers have every digit as the argmax and, for multikey, how
many answers' most likely first digit is that of another needle but not the asked one (the model read
the wrong fact), with the memory learning as it reads and with it frozen at its initial weights (the
no-memory ablation of `titans eval --no-memory`). Finer than `titans eval niah`, which needs every byte of
a generated answer right. One thread.
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
from titans_cli.tasks import make_niah


@torch.no_grad()
def value_scores(model: TitansModel, length: int, n: int, variant: str) -> tuple[float, int, int]:
    """(bits per value byte, answers whose every value byte is the argmax, answers whose likeliest first
    digit belongs to another needle only) over n documents."""
    tokenizer = tokenizer_for(model.config.tokenizer)
    bits, count, exact, other = 0.0, 0, 0, 0
    for i in range(n):
        example = make_niah(length, eval_seed(0, "niah", variant, length, i), variant, "number", split="eval")
        answer = answer_text(model.config, example)
        before_value = answer[: answer.rindex(example.answer)]  # "" for a value answer
        prefix = torch.cat([tokenizer.encode(example.document.encode()),
                            prompt_ids(model.config, tokenizer, example.question),
                            tokenizer.encode(before_value.encode())])  # fmt: skip
        value = tokenizer.encode(example.answer.encode())
        ids = torch.cat([prefix, value])[None]
        logits, _ = model(ids[:, :-1], model.init_state(1))
        logprobs = torch.log_softmax(logits[0, len(prefix) - 1 :].float(), -1)
        bits -= logprobs.gather(-1, value[:, None]).sum().item() / math.log(2)
        count += len(value)
        exact += bool((logprobs.argmax(-1) == value).all())
        first = chr(int(logprobs[0].argmax()))
        other += first != example.answer[0] and any(first == v[0] for v in example.meta["values"][1:])
    return bits / count, exact, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lengths", default="512,1024,2048")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--variant", choices=["single", "multikey"], default="single")
    parser.add_argument("--no-frozen", action="store_true", help="skip the frozen-memory columns")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model).load().eval()
    print("| document bytes | value bits/byte, memory | all digits argmax | another needle's | frozen memory "
          "| all digits argmax |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for length in (int(x) for x in args.lengths.split(",")):
        model.memory_learning = True
        bits, exact, other = value_scores(model, length, args.n, args.variant)
        row = f"| {length:,} | {bits:.2f} | {exact}/{args.n} | {other}/{args.n} |"
        if args.no_frozen:
            print(row + " | |", flush=True)
            continue
        model.memory_learning = False
        frozen_bits, frozen_exact, _ = value_scores(model, length, args.n, args.variant)
        print(row + f" {frozen_bits:.2f} | {frozen_exact}/{args.n} |", flush=True)


if __name__ == "__main__":
    main()
