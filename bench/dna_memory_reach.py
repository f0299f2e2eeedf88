"""How much of a DNA repeat can a memory give back? Next-base recall of an untrained induction memory.

    python bench/dna_memory_reach.py [--widths 128,512] [--kmers 0,6] [--segments 100,300,2000,5000]
                                     [--gaps 0,5000,50000] [--n 4]

A segment of S random bases, G bases of a synthetic genome (held-out seeds), the segment again: random
bases, so nothing but the copy predicts them (a genome's own segment may be a microsatellite or a repeat
family that its context predicts anyway). A freshly initialised one-layer LMM with the dna-tiny preset's
memory (induction init keyed on the 12 bases before each base, tied query, depth 2, chunk 8, θ at its
ceiling under the step cap of 2), one head of width d = d_model, writes every base as it reads. At each
base of the second copy (after its first 12, or 12 + k − 1 with k-mer keys, whose key still reaches
into the bases before it) the memory's read M_t(q_t), taken with the weights at the start of its chunk,
is compared with the four bases' value vectors (centred): recall is the share of positions whose
nearest value is the base that comes next (chance 0.25). Forgetting α_t is set to a constant
(`--alpha`, default 0: keep everything), the best case for a distant copy.

`--kmers`: the model's `kmer_embedding` (0 = keys over single bases). A first row gives the keys'
effective dimension, the participation ratio (Σλ)²/Σλ² of the centred keys' covariance over 20 kb: over
single bases a key is SiLU of a linear function of a 12 × 4 one-hot, whose centred part has rank at most
36 before the SiLU, so it has few more directions however wide the head.

This measures capacity and interference at initialisation, not what training makes of it. One thread.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import replace

import torch
import torch.nn.functional as F

from titans_cli.evaluation.key_geometry import key_dimension
from titans_cli.evaluation.seeds import eval_seed
from titans_cli.kernels import memory_read
from titans_cli.models import TitansModel, tokenizer_for
from titans_cli.models.kmer_embedding import BASES
from titans_cli.tasks import make_genome
from titans_cli.training.presets import preset


def skipped(model: TitansModel) -> int:
    """The first bases of the second copy, whose key still reaches into the bases before it: the span, and
    k − 1 more with k-mer vectors, since the key's convolution reads the k-mer vectors of its span."""
    return model.config.induction_span + max(model.config.kmer_embedding - 1, 0)


def memory_for(width: int, kmer: int, alpha: float, seed: int) -> TitansModel:
    torch.manual_seed(seed)
    config = replace(preset("dna-tiny").model, variant="lmm", n_layers=1, n_heads=1, d_model=width,
                     kmer_embedding=kmer, context_span=0)  # the layers' memory alone  # fmt: skip
    model = TitansModel(config).eval()
    gates = model.blocks[0].memory.gates  # rows: θ, η, α per head
    with torch.no_grad():  # α_t = sigmoid(bias) whatever the input: a constant
        gates.weight.view(3, config.n_heads, -1)[2].zero_()
        gates.bias.view(3, config.n_heads)[2].fill_(math.log(alpha / (1 - alpha)) if alpha > 0 else -40.0)
    return model


def memory_inputs(model: TitansModel, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The memory's input x [1, T, D] and key input (k-mer vectors, or None) for tokens [1, T] read from a
    fresh stream, and that fresh memory's state."""
    state = model.init_state(1).layers[0]
    key_input, _ = model.key_input(tokens, state.pop("kmer.tail", None))
    return model.blocks[0].norm_mem(model.embed(tokens)), key_input, state


def base_values(model: TitansModel) -> torch.Tensor:
    """[4, d]: the value each base writes, centred and normalised. Under the induction init a value reads its
    own token only, and k-mer vectors enter keys, not values."""
    memory = model.blocks[0].memory
    bases = torch.arange(BASES)[None]
    x = model.blocks[0].norm_mem(model.embed(bases))
    values = memory.projections(x, memory.init_state(1)["mem.conv"])[2][0, 0]
    return F.normalize(values - values.mean(0, keepdim=True), dim=-1)


@torch.no_grad()
def recall(model: TitansModel, tokens: torch.Tensor, second: int) -> float:
    """Next-base recall of the memory's reads at positions second + `skipped` … end − 1 of tokens [1, T]."""
    memory = model.blocks[0].memory
    x, key_input, state = memory_inputs(model, tokens)
    q = memory.projections(x, state["mem.conv"], key_input)[0]

    def learn(state: dict, start: int, end: int) -> dict:
        return memory(x[:, start:end], state, None if key_input is None else key_input[:, start:end])[1]

    first_chunk = second - second % memory.chunk_size  # read each chunk with the weights at its start
    state = learn(state, 0, first_chunk)
    reads = []
    for start in range(first_chunk, tokens.shape[1], memory.chunk_size):
        end = min(start + memory.chunk_size, tokens.shape[1])
        reads.append(memory_read(memory.weights(state), q[:, :, start:end]))
        state = learn(state, start, end)
    read = torch.cat(reads, dim=2)[0, 0, second - first_chunk : -1]  # the read at p predicts token p + 1
    nearest = (read.to(torch.float32) @ base_values(model).T).argmax(-1)
    return (nearest == tokens[0, second + 1 :])[skipped(model) :].float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="128,512")
    parser.add_argument("--kmers", default="0,6", help="kmer_embedding values (0 = single bases)")
    parser.add_argument("--segments", default="100,300,2000,5000", help="bases per copy")
    parser.add_argument("--gaps", default="0,5000,50000", help="bases between the copies")
    parser.add_argument("--alpha", type=float, default=0.0, help="forgetting per token")
    parser.add_argument("--n", type=int, default=4, help="genomes (and initialisations) per cell")
    args = parser.parse_args()
    torch.set_num_threads(1)
    columns = [(int(w), int(k)) for k in args.kmers.split(",") for w in args.widths.split(",")]
    tokenizer = tokenizer_for("dna")
    print(f"next-base recall on the second copy (chance 0.25), α = {args.alpha}, mean of {args.n}")
    print("| segment | gap | " + " | ".join(f"width {w}, k-mer {k or '–'}" for w, k in columns) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in columns) + " |")
    keys = tokenizer.encode(make_genome(20_000, eval_seed(0, "reach-keys")).sequence)[None]
    models = [memory_for(w, k, args.alpha, 0) for w, k in columns]
    dims = [f"{key_dimension(m, keys, skipped(m)):.0f}" for m in models]
    print("| keys' effective dimension | | " + " | ".join(dims) + " |", flush=True)
    for segment in (int(s) for s in args.segments.split(",")):
        for gap in (int(g) for g in args.gaps.split(",")):
            cells = []
            for width, kmer in columns:
                scores = []
                for i in range(args.n):
                    background = make_genome(gap + 1000, eval_seed(0, "reach", segment, gap, i)).sequence[:gap]
                    rng = random.Random(eval_seed(0, "reach-segment", segment, gap, i))
                    stretch = bytes(rng.choice(b"ACGT") for _ in range(segment))
                    tokens = tokenizer.encode(stretch + background + stretch)[None]
                    scores.append(recall(memory_for(width, kmer, args.alpha, i), tokens, segment + gap))
                cells.append(f"{sum(scores) / len(scores):.2f}")
            print(f"| {segment:,} | {gap:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
