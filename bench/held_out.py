"""Several models on the same held-out batches: the periodic training evaluation, run after the fact.

    python bench/held_out.py --preset text-tiny-mac --models text-tiny,runs/text-tiny-copy/model [--batches 4]

The batches are those of a training config (`--preset` or `--config`), its `data.eval_length` replaced by
`--length` when given, so runs trained on different data mixtures are compared on one set (one set as long
as the models share what the batches depend on: tokenizer, prompt template, segment length). Prints each
model's loss, teacher-forced answer accuracy and bits per token per component (training/validation.py),
then the peers on the same plain-text (lm) rows: gzip and xz bits per byte, each row compressed alone, as
each model reads it from a fresh state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from titans_cli.evaluation.baselines import compressed_bits_per_base
from titans_cli.evaluation.generate import PIECE_TOKENS
from titans_cli.model_registry import resolve_model
from titans_cli.models import tokenizer_for
from titans_cli.training.config import TrainConfig, load_train_config
from titans_cli.training.data import BatchMaker
from titans_cli.training.presets import preset
from titans_cli.training.validation import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="the held-out batches of this preset")
    source.add_argument("--config", help="the held-out batches of this training config (JSON or TOML)")
    parser.add_argument("--models", required=True, help="comma-separated bundled model names or model directories")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--length", type=int, default=None, help="tokens per held-out sequence")
    args = parser.parse_args()
    config = preset(args.preset) if args.preset else load_train_config(args.config)
    if args.length:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, eval_length=args.length))
    for name in args.models.split(","):
        model = resolve_model(name).load().eval()
        batches = BatchMaker(dataclasses.replace(config, model=model.config))
        result = validate(model, batches, args.batches, PIECE_TOKENS)
        print(json.dumps({"model": name, "batches": args.batches, "length": config.data.held_out_length, **result}))
    print(json.dumps({"peers_on_lm_rows": compressor_bits(config, args.batches)}))


def compressor_bits(config: TrainConfig, n_batches: int) -> dict[str, float]:
    """Mean gzip / xz bits per byte over the held-out plain-text rows, each row compressed on its own."""
    batches, tokenizer = BatchMaker(config), tokenizer_for(config.model.tokenizer)
    rows = []
    for index in range(n_batches):
        batch = batches.held_out_batch(index)
        for row, component in enumerate(batch.components):
            if component == "lm":
                ids = torch.cat([batch.tokens[row], batch.targets[row, -1:]])
                rows.append(compressed_bits_per_base(tokenizer.decode(ids.tolist())))
    return {name: sum(r[name] for r in rows) / len(rows) for name in ("gzip", "xz")} if rows else {}


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
