"""Several facts in one document, every one asked: the issue #7 must-hold, measured over held-out documents.

    python bench/several_facts.py --model text-tiny [--facts 3] [--lengths 2048,4096,8192] [--n 10]

Each document is a held-out multi-key NIAH example (`make_niah(..., "multikey", n_needles=F)`): F needle
sentences "The special magic number for KEY is: VALUE." with distinct keys, at random depths in background
text. The document is read once, as `ingest` does; then each of its F keys is asked from that same state,
as `ask --questions` does, and answered greedily (`evaluation/answers.is_correct`: the quoted value must be
the asked one). Unlike RULER's multi-key task, which asks one key of four, every fact must come back.
Prints, per length, the facts answered, the documents with every fact answered, and how often the
answer's sentence copied the asked key right (a quoting model copies it from the question with attention;
the memory then finds the value under the key's last 12 bytes, so a slip there can fetch another fact's
value). One thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

import torch

from titans_cli.evaluation.answers import is_correct
from titans_cli.evaluation.generate import decode, prompt_ids, read, stop_ids
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.model_registry import resolve_model
from titans_cli.models import tokenizer_for
from titans_cli.tasks import make_niah
from titans_cli.tasks.niah import niah_question

QUOTED_KEY = re.compile(r" for (\S+) is: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundled model name or model directory")
    parser.add_argument("--facts", type=int, default=3)
    parser.add_argument("--lengths", default="2048,4096,8192", help="document bytes")
    parser.add_argument("--n", type=int, default=10, help="documents per length")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = resolve_model(args.model).load().eval()
    config, tokenizer = model.config, tokenizer_for(model.config.tokenizer)
    print(f"{args.model}: {args.facts} facts per held-out document, each asked, n = {args.n} documents")
    print("| document bytes | facts answered | documents with every fact answered | key copied right |")
    print("| ---: | ---: | ---: | ---: |")
    for length in (int(n) for n in args.lengths.split(",")):
        right = documents = keys_right = 0
        for i in range(args.n):
            example = make_niah(length, eval_seed(0, "several-facts", length, i), "multikey", "number",
                                split="eval", n_needles=args.facts)  # fmt: skip
            _, state = read(model, tokenizer.encode(example.document.encode())[None])
            answered = 0
            for key, value in zip(example.meta["keys"], example.meta["values"], strict=True):
                question = niah_question("multikey", "number", key)
                logits, after = read(model, prompt_ids(config, tokenizer, question)[None], state)
                decoded, _ = decode(model, logits, after, 96, stop_ids(tokenizer))
                answer = tokenizer.decode(decoded[0].ids).decode(errors="replace")
                asked = dataclasses.replace(example, question=question, answer=value,
                                            meta={**example.meta, "key": key})  # fmt: skip
                answered += is_correct(config, asked, answer)
                keys_right += QUOTED_KEY.findall(answer)[:1] == [key]
            right += answered
            documents += answered == args.facts
        total = args.n * args.facts
        keys = f"{keys_right} of {total}" if config.answer_style == "quote" else "n/a (not quoting)"
        print(f"| {length:,} | {right} of {total} ({right / total:.0%}) | {documents} of {args.n} | {keys} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
