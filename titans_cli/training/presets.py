"""Named starting points for `titans train --preset`: tiny models for a 2-core CPU, small ones for a GPU.

The tiny presets are sized so a few hours of CPU training move the model well past chance on short
retrieval; their weights stay under 25 MB. Print one with `titans train --preset NAME --print-config` to
edit it into a config file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from titans_cli.models import TitansConfig
from titans_cli.training.config import DataConfig, OptimConfig, TrainConfig

# A chunk's inner gradients are all taken at its start weights and summed, amplified by momentum; once
# training opens the gates a deep memory's weights can blow up within a few chunks. Without clipping,
# text-tiny runs hit NaN at step ~100 (θ_max = 1), ~116 (0.1), ~150 (0.01): a lower θ_max only delays it.
# Clipping each token's inner gradient to norm 1 bounds every step by θ_max, so the memory cannot diverge.
THETA_MAX = 0.1
MEMORY_GRAD_CLIP = 1.0
# The clip bounds the forward pass, not the backward pass: a memory whose step per chunk C·θ/(1 − η)
# grew past 2 (35 in layer 1 of a MAG run) made the outer gradient norm spike to 10⁶ and the run degrade
# after ~1,000 steps. Capping the step at 2 cut the spikes of a rerun of the first text-tiny run (8 logged
# above 5 in 685 steps, largest 322, against 2, largest 17) and lowered its training loss and held-out
# bits per byte from step 400 on (BENCHMARKS.md).
MAX_CHUNK_STEP = 2.0


# text-tiny-mac's and text-small's MAC memory learns from the segment tokens, not from the attention output
# (SPEC's default): on a recall toy the latter stayed at chance for 3,500+ steps, and at step 800 a MAC run
# learning from the tokens coded held-out text in 3.12 bits per byte against 3.57 for the same preset
# learning from the attention output (BENCHMARKS.md). The DNA presets keep SPEC's default until a DNA run
# has measured the change.
TEXT_MAC_MEMORY_INPUT = "segment"


def _tiny_model(name: str, tokenizer: str, vocab_size: int) -> TitansConfig:
    return TitansConfig(name=name, variant="mac", vocab_size=vocab_size, tokenizer=tokenizer, d_model=128,
                        n_layers=4, n_heads=4, memory_depth=2, memory_expansion=2, chunk_size=64, segment_len=128,
                        window=128, n_persistent=4, theta_max=THETA_MAX,
                        memory_grad_clip=MEMORY_GRAD_CLIP, max_chunk_step=MAX_CHUNK_STEP)  # fmt: skip


def _small_model(name: str, tokenizer: str, vocab_size: int) -> TitansConfig:
    return TitansConfig(name=name, variant="mac", vocab_size=vocab_size, tokenizer=tokenizer, d_model=512,
                        n_layers=8, n_heads=8, memory_depth=2, memory_expansion=2, chunk_size=64, segment_len=256,
                        window=256, n_persistent=8, theta_max=THETA_MAX,
                        memory_grad_clip=MEMORY_GRAD_CLIP, max_chunk_step=MAX_CHUNK_STEP)  # fmt: skip


def text_tiny() -> TrainConfig:
    """The first recipe whose memory retrieves (BENCHMARKS.md, "Retrieving a needle through the memory"): a
    two-layer MAG whose memories start as induction copies keyed on the last 12 bytes, writing each token
    at a step of 2 per chunk of 8, read through a sigmoid gate, and a model that answers a NIAH question by
    quoting the needle sentence, whose value then follows the same 12 bytes as in the document. The bundled
    `text-tiny` is this recipe's run at step 1,112, fine-tuned in two stages into `tied_query` with
    backpropagation through whole 2 and 4 KiB sequences; both stages' configs ship beside it."""
    model = TitansConfig(name="text-tiny", variant="mag", vocab_size=260, tokenizer="bytes", d_model=128,
                         n_layers=2, n_heads=2, memory_depth=2, memory_expansion=2, chunk_size=8, segment_len=128,
                         window=128, n_persistent=4, conv_kernel=13, theta_max=0.25,
                         memory_grad_clip=MEMORY_GRAD_CLIP, max_chunk_step=MAX_CHUNK_STEP, memory_gate="sigmoid",
                         memory_init="induction", induction_span=12, answer_style="quote")  # fmt: skip
    return TrainConfig(
        model=model,
        data=DataConfig(kind="text", mixture={"niah": 0.6, "kv": 0.1, "babi": 0.1, "lm": 0.2},
                        curriculum=[(0, 512), (600, 1024)], planted_repeats=1.0, repeats_per_window=2),
        optim=OptimConfig(lr=2e-3, warmup_steps=100),
        steps=2000, batch_size=8, tbptt_len=512, eval_every=200, eval_batches=2, checkpoint_every=50,
    )  # fmt: skip


def text_tiny_mac() -> TrainConfig:
    """`text-tiny` until session 9: MAC, random memory init, SiLU gate, value answers. Its memory never
    retrieved; kept because the benchmarks of that period (bench/learns_to_copy.py, memory_readout.py,
    outer_gradient.py) are built on it."""
    return TrainConfig(
        model=replace(_tiny_model("text-tiny-mac", "bytes", 260), mac_memory_input=TEXT_MAC_MEMORY_INPUT),
        data=DataConfig(kind="text", curriculum=[(0, 512), (1500, 1024), (3000, 2048)]),
        optim=OptimConfig(lr=2e-3, warmup_steps=100),
        steps=4000, batch_size=8, tbptt_len=512, eval_every=200, eval_batches=2, checkpoint_every=50,
    )  # fmt: skip


def dna_tiny() -> TrainConfig:
    """`text-tiny`'s recipe read as DNA: a two-layer MAG whose memories start as induction copies keyed on
    the 12 bases before each base, with the query tied to the key, trained with backpropagation through
    whole windows in which two stretches of each are planted again at least 256 bases later. Changes for
    DNA: a 6-mer vector beside each base's (`kmer_embedding`), without which a key over 12 bases has at most
    36 directions before the SiLU whatever the head width; one memory head of the full width 128, since a
    head holds about one to two associations per unit of width and every base of a repeat is one
    (BENCHMARKS.md, "Keys for DNA"); and a context memory keyed on the exact last 12 bases (`context_span`),
    which holds one association per row of its 2^20, trained with 2^15 rows. The bundled `dna-tiny` is this
    recipe without the context memory (session 11), then fine-tuned with it added; both configs ship
    beside it."""
    model = replace(text_tiny().model, name="dna-tiny", vocab_size=9, tokenizer="dna", n_heads=1,
                    answer_style="value", tied_query=True, kmer_embedding=6, context_span=12)
    return TrainConfig(
        model=model,
        data=DataConfig(kind="dna", mixture={}, curriculum=[(0, 1024), (150, 2048)], planted_repeats=1.0,
                        repeats_per_window=2),
        optim=OptimConfig(lr=2e-3, warmup_steps=50),
        steps=350, batch_size=8, tbptt_len=2048, eval_every=100, eval_batches=2, checkpoint_every=25,
        context_rows_log2=15,
    )  # fmt: skip


def dna_tiny_mac() -> TrainConfig:
    """`dna-tiny` until session 11: MAC, random memory init, SiLU gate, 1,024-base TBPTT pieces. Its memory
    never helped on a repeat (its former model card, commit 3475b60)."""
    return TrainConfig(
        model=_tiny_model("dna-tiny-mac", "dna", 9),
        data=DataConfig(kind="dna", mixture={}, curriculum=[(0, 1024), (1500, 2048), (3000, 4096)],
                        planted_repeats=0.5),
        optim=OptimConfig(lr=2e-3, warmup_steps=100),
        steps=4000, batch_size=8, tbptt_len=1024, eval_every=200, eval_batches=2, checkpoint_every=50,
    )  # fmt: skip


def text_small() -> TrainConfig:
    return TrainConfig(
        model=replace(_small_model("text-small", "bytes", 260), mac_memory_input=TEXT_MAC_MEMORY_INPUT),
        data=DataConfig(kind="text", curriculum=[(0, 1024), (5000, 4096), (20000, 16384)]),
        optim=OptimConfig(lr=1e-3, warmup_steps=1000),
        steps=50_000, batch_size=32, tbptt_len=2048, eval_every=1000, eval_batches=4, checkpoint_every=500,
    )  # fmt: skip


def dna_small() -> TrainConfig:
    return TrainConfig(
        model=_small_model("dna-small", "dna", 9),
        data=DataConfig(kind="dna", mixture={}, curriculum=[(0, 2048), (5000, 8192), (20000, 32768)],
                        genome_length=4_000_000, n_genomes=64, planted_repeats=0.5),
        optim=OptimConfig(lr=1e-3, warmup_steps=1000),
        steps=50_000, batch_size=32, tbptt_len=4096, eval_every=1000, eval_batches=4, checkpoint_every=500,
    )  # fmt: skip


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "text-tiny": text_tiny,
    "text-tiny-mac": text_tiny_mac,
    "dna-tiny": dna_tiny,
    "dna-tiny-mac": dna_tiny_mac,
    "text-small": text_small,
    "dna-small": dna_small,
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
