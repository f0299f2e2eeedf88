"""How well a model predicts a needle's value from memory, by document length, memory learning vs frozen.

    python bench/needle_value.py --model DIR [--lengths 512,1024,2048] [--n 12]

Single-needle NIAH documents (7-digit numbers, held-out seeds and background) are read with the question
and the model's own answer (`answer_text`: the value, or the quoted needle sentence) teacher-forced. For the
value's digits it prints bits per byte (uniform over digits: 3.32) and how many answers have every digit
as the argmax, with the memory learning as it reads and with it frozen at its initial weights (the
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
def value_scores(model: TitansModel, length: int, n: int) -> tuple[float, int]:
    """(bits per value byte, answers whose every value byte is the argmax) over n documents."""
    tokenizer = tokenizer_for(model.config.tokenizer)
    bits, count, exact = 0.0, 0, 0
    for i in range(n):
        example = make_niah(length, eval_seed(0, "niah", "single", length, i), "single", "number", split="eval")
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
    return bits / count, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--lengths", default="512,1024,2048")
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model).load().eval()
    print("| document bytes | value bits/byte, memory | all digits argmax | frozen memory | all digits argmax |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for length in (int(x) for x in args.lengths.split(",")):
        model.memory_learning = True
        learning = value_scores(model, length, args.n)
        model.memory_learning = False
        frozen = value_scores(model, length, args.n)
        print(f"| {length:,} | {learning[0]:.2f} | {learning[1]}/{args.n} | {frozen[0]:.2f} | {frozen[1]}/{args.n} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
