"""What a memory keyed on the exact preceding bases could recall of the sample genome's far copy.

The bundled dna-tiny's memory carries nothing 5,000 bases on (BENCHMARKS.md, "Keys for DNA"): its keys
live in a 128-wide space, where a few hundred associations fit, and a 5 kb copy read 50 kb after its
source needs the ~55,000 written in between to survive. This bench measures the ceiling of the
alternative design: a linear memory whose key is the one-hot row of a hashed n-base context, written
with θ = 1, η = 0, α = 0 (each write replaces its row: the last writer wins). Such a memory is a Titans
memory of depth 1 whose inner gradient touches one row, so its capacity is its row count, not its width.

For each n and row count it reports, over the second copy of samples/genome.fa (bases 75,000 + n …
80,000 of chrS) and over background without a planted copy (chrS 100,000 … 120,000):

    hit      share of bases whose context row was written before (the read is not zero)
    right    share of bases whose row's last write is the base that comes next (a correct copy)
    wrong    share of bases whose row's last write is another base (a collision or a chance match)

Peers over the same regions: gzip's and xz's marginal bits per base (the compressed size of the record
up to the region's end less that up to its start), and, given `titans score ... --per-base FILE`, the
model's bits per base there.

    python bench/context_recall.py [--fasta samples/genome.fa] [--per-base bases.parquet ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from titans_cli.evaluation.baselines import compressed_bits_per_base
from titans_cli.models.kmer_embedding import BASES, kmer_indices
from titans_cli.models.tokenizer import dna_tokenizer
from titans_cli.readers import open_input

SECOND_COPY = (75_000, 80_000)
BACKGROUND = (100_000, 120_000)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a multiply spreads nearby codes over the rows


def read_record(path: Path, name: str) -> np.ndarray:
    """The record's dna token ids (0–3 are A, C, G, T), through the project's streaming reader."""
    parts = []
    with open_input([str(path)], kind="dna") as reader:
        for piece in reader:
            if piece.record == name:
                parts.append(piece.data)
    return dna_tokenizer().encode(b"".join(parts)).numpy()


def context_rows(bases: np.ndarray, n: int, row_bits: int | None) -> np.ndarray:
    """Row of the n bases before each position (−1 where that context is incomplete or holds N)."""
    codes = kmer_indices(torch.from_numpy(bases)[None, :-1], n)[0].numpy()  # the n-mer ending at t − 1
    valid = codes < BASES**n
    hashed = codes.astype(np.uint64)
    if row_bits is not None:
        hashed = (hashed * GOLDEN) >> np.uint64(64 - row_bits)
    rows = np.full(len(bases), -1, dtype=np.int64)
    rows[n:] = np.where(valid, hashed.astype(np.int64), -1)
    return rows


def last_writer(rows: np.ndarray) -> np.ndarray:
    """For each position, the latest earlier position with the same row (−1 if none)."""
    order = np.lexsort((np.arange(len(rows)), rows))
    same = np.r_[False, rows[order][1:] == rows[order][:-1]]
    previous = np.full(len(rows), -1)
    previous[order[1:][same[1:]]] = order[:-1][same[1:]]
    previous[rows < 0] = -1
    return previous


def recall(bases: np.ndarray, previous: np.ndarray, n: int, span: tuple[int, int]) -> tuple[float, ...]:
    """(hit, right, wrong) over `span`, given each position's last writer."""
    lo, hi = span[0] + n, span[1]
    source = previous[lo:hi]
    hit = source >= 0
    right = hit & (bases[np.maximum(source, 0)] == bases[lo:hi])
    return hit.mean(), right.mean(), (hit & ~right).mean()


def compressor_bits(bases: bytes, span: tuple[int, int]) -> dict[str, float]:
    """gzip's and xz's marginal bits per base over `span` of the record `bases`."""
    before, through = (compressed_bits_per_base(bases[:end]) for end in span)
    return {name: (through[name] * span[1] - before[name] * span[0]) / (span[1] - span[0]) for name in before}


def model_bits(per_base: Path, record: str, span: tuple[int, int]) -> float:
    """Mean bits per scored base over `span` of `record` in a `titans score --per-base` file."""
    table = pq.read_table(per_base, filters=[("id", "=", record)]).to_pydict()
    loglik = np.array(table["loglik"], dtype=float)  # unscored bases (null) become NaN
    position = np.array(table["position"])
    inside = (position >= span[0]) & (position < span[1]) & np.isfinite(loglik)
    return float(-loglik[inside].mean() / np.log(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fasta", type=Path, default=Path(__file__).parent.parent / "samples" / "genome.fa")
    parser.add_argument("--record", default="chrS")
    parser.add_argument("--per-base", type=Path, nargs="*", default=[], help="titans score --per-base files")
    args = parser.parse_args()
    bases = read_record(args.fasta, args.record)
    sequence = dna_tokenizer().decode(torch.from_numpy(bases))
    regions = {"first copy": (20_000, 25_000), "second copy": SECOND_COPY, "background": BACKGROUND}
    print("| bits per base | " + " | ".join(regions) + " |")
    print("| --- |" + " ---: |" * len(regions))
    for name in ("gzip", "xz"):
        print(f"| {name} | " + " | ".join(f"{compressor_bits(sequence, r)[name]:.3f}" for r in regions.values()) + " |")
    for path in args.per_base:
        print(f"| {path} | " + " | ".join(f"{model_bits(path, args.record, r):.3f}" for r in regions.values()) + " |")
    print(f"{args.record}: {len(bases):,} bases; the last writer of each context row predicts the next base")
    print("| n | rows | copy hit | copy right | copy wrong | background hit | background right | background wrong |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (8, 12, 16, 24):
        for row_bits in (16, 18, 20, None):
            previous = last_writer(context_rows(bases, n, row_bits))
            copy = recall(bases, previous, n, SECOND_COPY)
            background = recall(bases, previous, n, BACKGROUND)
            rows = "exact" if row_bits is None else f"2^{row_bits}"
            cells = " | ".join(f"{x:.3f}" for x in (*copy, *background))
            print(f"| {n} | {rows} | {cells} |")


if __name__ == "__main__":
    main()
