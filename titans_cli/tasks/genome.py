"""Synthetic genomes with the structure real ones have, and an exact record of where every structure is.

A genome is written left to right as a sequence of elements, each appended whole:

* background: an order-2 Markov chain (so it is not i.i.d.: dinucleotide preferences, CpG depletion)
  whose GC content follows isochores, domains of ``isochore_length`` bases (tens of kb) with a target GC
  drawn from ``gc_range`` (35-60%); each isochore is annotated with its target ``gc``;
* gene: an open reading frame, ATG, codons drawn from a per-genome biased codon-usage table (no internal
  stop), a stop codon; on the minus strand the whole ORF is reverse-complemented;
* tandem_repeat: microsatellites (unit 1-6 bp) and minisatellites (unit 10-60 bp), with up to 3%
  substitutions; ``unit`` is the repeated unit;
* interspersed_repeat: copies of a few family consensus sequences (300-3000 bp, some with a poly-A tail),
  sometimes 5'-truncated, inserted on either strand with 2-15% substitutions and small indels; ``family``,
  ``copy``, and ``source_start``/``source_end`` index into ``SyntheticGenome.repeat_families[family]``;
* inverted_repeat: the reverse complement of an earlier stretch (50-1500 bp, up to 5 kb back), 0-5% mutated;
* segmental_duplication: a copy of an earlier 1-20 kb region 10-500 kb back, ~1% divergent (0.5-1.5%), in
  either orientation (``strand="-"`` means the copy is the reverse complement of the source);
* gap (only with ``n_runs=True``): a run of N, as in assembly gaps; N occurs nowhere else.

Every copy records ``source_start``/``source_end`` and ``divergence`` = (substituted + inserted + deleted
bases) / source length, an upper bound on the edit distance between the copy and its (oriented) source.
Elements never overwrite one another (copies of a region are taken from what is already written), so every
annotation stays true. With ``soft_mask=True`` tandem and interspersed repeats are written in lower case,
as RepeatMasker-masked assemblies are; copies of masked regions keep their case.

``iter_genome(length, seed, ...)`` yields ``GenomeChunk``s of ``chunk_size`` bases holding only a bounded
look-back window in memory, so genomes of any length stream; each chunk carries the features that end
inside it (complete when reported). ``make_genome(length, seed, ...)`` collects a whole ``SyntheticGenome``.
The sequence is exactly ``length`` bases (the last element is replaced by background if it would not fit),
upper-case ACGT unless masking or gaps are asked for, and a pure function of (length, seed, flags, config),
whatever the chunk size. All randomness comes from one ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from titans_cli.readers.nucleotides import reverse_complement

BASES = b"ACGT"
START_CODON = b"ATG"
STOP_CODONS: tuple[bytes, ...] = (b"TAA", b"TAG", b"TGA")
SENSE_CODONS: tuple[bytes, ...] = tuple(
    codon for codon in (bytes(c) for c in itertools.product(BASES, repeat=3)) if codon not in STOP_CODONS
)
FEATURE_KINDS: tuple[str, ...] = (
    "isochore", "gene", "tandem_repeat", "interspersed_repeat", "inverted_repeat", "segmental_duplication",
    "gap",
)

_BASE_ARRAY = np.frombuffer(BASES, dtype=np.uint8)
_SENSE_ARRAY = np.frombuffer(b"".join(SENSE_CODONS), dtype=np.uint8).reshape(-1, 3)
_BASE_INDEX = {base: i for i, base in enumerate(BASES)}
_POOL_BASES = 1 << 16
_CHAIN_LENGTH = 256


@dataclass(frozen=True)
class Feature:
    """One annotated structure, on the 0-based half-open interval ``[start, end)`` of the genome.

    ``strand`` is ``"-"`` for a reverse-complemented element. ``source_start``/``source_end`` locate the
    copied material: genome coordinates for inverted repeats and segmental duplications, consensus
    coordinates for interspersed repeats. ``divergence`` bounds the edit distance to the source (see the
    module docstring); ``unit`` is a tandem repeat's unit; ``gc`` an isochore's target GC fraction.
    """

    kind: str
    start: int
    end: int
    strand: str = "+"
    source_start: int | None = None
    source_end: int | None = None
    family: int | None = None
    copy: int | None = None
    divergence: float | None = None
    unit: str | None = None
    gc: float | None = None

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class GenomeConfig:
    """Sizes and frequencies of the structures; the defaults give a roughly human-like mix.

    The ``*_weight`` fields are relative odds of each element at every step (background included).
    """

    isochore_length: tuple[int, int] = (20_000, 100_000)
    gc_range: tuple[float, float] = (0.35, 0.60)
    background_mean: int = 1_500
    background_weight: float = 0.55
    gene_weight: float = 0.08
    microsatellite_weight: float = 0.12
    minisatellite_weight: float = 0.04
    interspersed_weight: float = 0.15
    inverted_weight: float = 0.05
    segdup_weight: float = 0.006
    gap_weight: float = 0.004
    gene_codons: tuple[int, int] = (100, 800)
    n_repeat_families: int = 5
    repeat_length: tuple[int, int] = (300, 3_000)
    repeat_divergence: tuple[float, float] = (0.02, 0.15)
    inverted_length: tuple[int, int] = (50, 1_500)
    segdup_length: tuple[int, int] = (1_000, 20_000)
    segdup_distance: tuple[int, int] = (10_000, 500_000)
    segdup_divergence: tuple[float, float] = (0.005, 0.015)


@dataclass(frozen=True)
class GenomeChunk:
    """``sequence`` covers ``[start, start + len(sequence))``; ``features`` are those ending inside it."""

    start: int
    sequence: bytes
    features: tuple[Feature, ...]


@dataclass(frozen=True)
class SyntheticGenome:
    sequence: bytes
    annotations: list[Feature]  # sorted by (start, end)
    repeat_families: tuple[bytes, ...] = field(repr=False)
    seed: int

    def features(self, kind: str) -> list[Feature]:
        return [f for f in self.annotations if f.kind == kind]


def mutate(seq: bytes, rate: float, indel_fraction: float, rng: np.random.Generator) -> tuple[bytes, int]:
    """Apply ~``rate`` mutation events per base (a share ``indel_fraction`` of them 1-5 bp indels).

    Returns the mutated sequence and the number of edited bases, which bounds the edit distance.
    Substitutions keep the case of the base they replace.
    """
    n = len(seq)
    n_events = int(rng.binomial(n, rate)) if n and rate > 0 else 0
    if n_events == 0:
        return seq, 0
    positions = np.sort(rng.choice(n, size=n_events, replace=False))
    kinds = rng.random(n_events)
    shifts = rng.integers(1, 4, size=n_events)
    sizes = np.minimum(rng.geometric(0.5, size=n_events), 5)
    inserted = _BASE_ARRAY[rng.integers(0, 4, size=(n_events, 5))]
    out = bytearray()
    previous = edits = 0
    for i, p in enumerate(positions.tolist()):
        if p < previous:  # inside an earlier deletion
            continue
        out += seq[previous:p]
        if kinds[i] >= indel_fraction:
            base = seq[p]
            index = _BASE_INDEX.get(base & 0xDF, 0)  # N (or anything else) becomes a real base
            new = BASES[(index + int(shifts[i])) % 4] | (base & 0x20 if base & 0xDF in _BASE_INDEX else 0)
            out.append(new)
            previous, edits = p + 1, edits + 1
        elif kinds[i] < indel_fraction / 2:
            size = int(sizes[i])
            out += inserted[i, :size].tobytes()
            previous, edits = p, edits + size
        else:
            size = min(int(sizes[i]), n - p)
            previous, edits = p + size, edits + size
    out += seq[previous:]
    return bytes(out), edits


def _markov_codes(n: int, cumulative: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` base codes from an order-2 Markov chain, sampled as parallel chains laid end to end.

    Sampling one long chain is a Python loop per base; parallel chains of 256 bases make it a loop of 256
    vectorised steps, and the seams (one per 256 bases, restarting from a random context) do not matter.
    """
    steps = min(_CHAIN_LENGTH, n)
    n_chains = -(-n // steps)
    state = rng.integers(0, 16, size=n_chains)
    uniforms = rng.random((steps, n_chains))
    codes = np.empty((n_chains, steps), dtype=np.uint8)
    for t in range(steps):
        base = (uniforms[t][:, None] > cumulative[state, :3]).sum(axis=1)
        codes[:, t] = base
        state = ((state << 2) | base) & 15
    return codes.reshape(-1)[:n]


class _GenomeWriter:
    """Appends elements left to right, keeping only a look-back window of the sequence in memory."""

    def __init__(self, length: int, seed: int, soft_mask: bool, n_runs: bool, config: GenomeConfig) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.length, self.soft_mask, self.config = length, soft_mask, config
        self.rng = rng = np.random.default_rng(seed)
        self.families = tuple(self._consensus() for _ in range(config.n_repeat_families))
        self.family_divergence = rng.uniform(*config.repeat_divergence, size=config.n_repeat_families)
        self.family_copies = [0] * config.n_repeat_families
        self.codon_p = rng.gamma(0.7, size=len(SENSE_CODONS))  # skewed weights: a biased usage table
        self.codon_p /= self.codon_p.sum()
        self.context_p = rng.dirichlet(np.full(4, 6.0), size=16)  # genome-wide dinucleotide preferences
        self.context_p[1::4, 2] *= 0.25  # after C, G is rare: CpG depletion
        builders = {
            "background": (config.background_weight, self._background_element),
            "gene": (config.gene_weight, self._gene),
            "microsatellite": (config.microsatellite_weight, self._microsatellite),
            "minisatellite": (config.minisatellite_weight, self._minisatellite),
            "interspersed": (config.interspersed_weight, self._interspersed),
            "inverted": (config.inverted_weight, self._inverted),
            "segdup": (config.segdup_weight, self._segdup),
            "gap": (config.gap_weight if n_runs else 0.0, self._gap),
        }
        self.builders = [build for weight, build in builders.values() if weight > 0]
        weights = np.array([weight for weight, _ in builders.values() if weight > 0])
        self.weights = weights / weights.sum()
        self.window = bytearray()
        self.window_start = 0
        self.pos = 0
        self.features: list[Feature] = []
        self.lookback = config.segdup_distance[1] + config.segdup_length[1]
        self._open_isochore()

    # -- per-genome material -------------------------------------------------------------------------
    def _consensus(self) -> bytes:
        low, high = self.config.repeat_length
        gc = self.rng.uniform(0.35, 0.6)
        size = int(self.rng.integers(low, high, endpoint=True))
        codes = self.rng.choice(4, size=size, p=[(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
        body = _BASE_ARRAY[codes].tobytes()
        # Retrotransposons (LINEs, SINEs) end in a poly-A tail; give half the families one.
        return body + b"A" * int(self.rng.integers(10, 31)) if self.rng.random() < 0.5 else body

    def _open_isochore(self) -> None:
        self.iso_start = self.pos
        self.iso_gc = float(self.rng.uniform(*self.config.gc_range))
        self.iso_end = self.pos + int(self.rng.integers(*self.config.isochore_length, endpoint=True))
        p = self.context_p.copy()
        gc_mass = p[:, 1] + p[:, 2]
        p[:, 1:3] *= (self.iso_gc / gc_mass)[:, None]  # every context emits G or C with the target odds
        p[:, [0, 3]] *= ((1 - self.iso_gc) / (1 - gc_mass))[:, None]
        self.cumulative = np.cumsum(p, axis=1)
        self.pool = np.empty(0, dtype=np.uint8)
        self.pool_at = 0

    def _close_isochore(self) -> None:
        if self.pos > self.iso_start:
            self.features.append(Feature("isochore", self.iso_start, self.pos, gc=round(self.iso_gc, 4)))

    # -- elements: each returns (sequence, feature fields) or None when it cannot be placed here -------
    def _background(self, n: int) -> bytes:
        pieces = []
        while n > 0:
            if self.pool_at == len(self.pool):
                self.pool, self.pool_at = _markov_codes(_POOL_BASES, self.cumulative, self.rng), 0
            take = min(n, len(self.pool) - self.pool_at)
            pieces.append(_BASE_ARRAY[self.pool[self.pool_at : self.pool_at + take]].tobytes())
            self.pool_at += take
            n -= take
        return b"".join(pieces)

    def _background_element(self) -> None:
        return None  # background is what the step writes when no element is placed

    def _gene(self) -> tuple[bytes, dict] | None:
        n_codons = int(self.rng.integers(*self.config.gene_codons, endpoint=True))
        body = _SENSE_ARRAY[self.rng.choice(len(SENSE_CODONS), size=n_codons, p=self.codon_p)].tobytes()
        orf = START_CODON + body + STOP_CODONS[int(self.rng.choice(3, p=[0.3, 0.2, 0.5]))]
        if self.rng.random() < 0.5:
            return orf, {"kind": "gene", "strand": "+"}
        return reverse_complement(orf), {"kind": "gene", "strand": "-"}

    def _tandem(self, unit_length: int, total: int) -> tuple[bytes, dict]:
        unit = _BASE_ARRAY[self.rng.integers(0, 4, size=unit_length)].tobytes()
        perfect = (unit * (total // unit_length + 1))[:total]
        seq, edits = mutate(perfect, float(self.rng.uniform(0, 0.03)), 0.0, self.rng)
        fields = {"kind": "tandem_repeat", "unit": unit.decode(), "divergence": edits / total}
        return self._masked(seq), fields

    def _microsatellite(self) -> tuple[bytes, dict]:
        return self._tandem(int(self.rng.integers(1, 7)), int(self.rng.integers(15, 151)))

    def _minisatellite(self) -> tuple[bytes, dict]:
        unit_length = int(self.rng.integers(10, 61))
        return self._tandem(unit_length, unit_length * int(self.rng.integers(5, 41)))

    def _interspersed(self) -> tuple[bytes, dict]:
        family = int(self.rng.integers(len(self.families)))
        consensus = self.families[family]
        # Most real copies are 5'-truncated: reverse transcription rarely reaches the start.
        start = int(self.rng.integers(0, max(1, len(consensus) - 100))) if self.rng.random() < 0.3 else 0
        source = consensus[start:]
        low, high = self.config.repeat_divergence
        rate = float(np.clip(self.family_divergence[family] + self.rng.normal(0, 0.01), low, high))
        seq, edits = mutate(source, rate, 0.15, self.rng)
        strand = "+" if self.rng.random() < 0.5 else "-"
        if strand == "-":
            seq = reverse_complement(seq)
        copy = self.family_copies[family]
        self.family_copies[family] += 1
        return self._masked(seq), {
            "kind": "interspersed_repeat", "strand": strand, "family": family, "copy": copy,
            "source_start": start, "source_end": len(consensus), "divergence": edits / len(source),
        }

    def _earlier(self, source_start: int, source_end: int) -> bytes | None:
        if source_start < max(0, self.window_start):
            return None
        source = bytes(self.window[source_start - self.window_start : source_end - self.window_start])
        return None if b"N" in source else source  # assembly gaps are never copied: N only marks gaps

    def _inverted(self) -> tuple[bytes, dict] | None:
        size = int(self.rng.integers(*self.config.inverted_length, endpoint=True))
        source_end = self.pos - int(self.rng.integers(0, 5_001))
        source = self._earlier(source_end - size, source_end)
        if source is None:
            return None
        seq, edits = mutate(reverse_complement(source), float(self.rng.uniform(0, 0.05)), 0.1, self.rng)
        return seq, {
            "kind": "inverted_repeat", "strand": "-", "source_start": source_end - size,
            "source_end": source_end, "divergence": edits / size,
        }

    def _segdup(self) -> tuple[bytes, dict] | None:
        size = int(self.rng.integers(*self.config.segdup_length, endpoint=True))
        source_end = self.pos - int(self.rng.integers(*self.config.segdup_distance, endpoint=True))
        source = self._earlier(source_end - size, source_end)
        if source is None:
            return None
        strand = "+" if self.rng.random() < 0.8 else "-"
        if strand == "-":
            source = reverse_complement(source)
        seq, edits = mutate(source, float(self.rng.uniform(*self.config.segdup_divergence)), 0.05, self.rng)
        return seq, {
            "kind": "segmental_duplication", "strand": strand, "source_start": source_end - size,
            "source_end": source_end, "divergence": edits / size,
        }

    def _gap(self) -> tuple[bytes, dict]:
        return b"N" * int(self.rng.integers(100, 5_001)), {"kind": "gap"}

    def _masked(self, seq: bytes) -> bytes:
        return seq.lower() if self.soft_mask else seq

    # -- writing ---------------------------------------------------------------------------------------
    def _append(self, seq: bytes) -> None:
        self.window += seq
        self.pos += len(seq)

    def step(self) -> None:
        if self.pos >= self.iso_end:
            self._close_isochore()
            self._open_isochore()
        remaining = self.length - self.pos
        build = self.builders[int(self.rng.choice(len(self.builders), p=self.weights))]
        element = build()
        if element is not None and len(element[0]) <= remaining:
            seq, fields = element
            self.features.append(Feature(start=self.pos, end=self.pos + len(seq), **fields))
            self._append(seq)
            return
        stretch = int(self.rng.geometric(1 / self.config.background_mean))
        self._append(self._background(max(1, min(stretch, self.iso_end - self.pos, remaining))))

    def chunk(self, start: int, end: int) -> GenomeChunk:
        sequence = bytes(self.window[start - self.window_start : end - self.window_start])
        done = [f for f in self.features if f.end <= end]
        self.features = [f for f in self.features if f.end > end]
        # Keep what later copies may need (the look-back) and what is not yet emitted; drop the rest,
        # in large steps so trimming stays cheap.
        keep_from = min(end, self.pos - self.lookback)
        if keep_from - self.window_start > self.lookback:
            del self.window[: keep_from - self.window_start]
            self.window_start = keep_from
        return GenomeChunk(start, sequence, tuple(done))

    def chunks(self, chunk_size: int) -> Iterator[GenomeChunk]:
        emitted = 0
        while self.pos < self.length:
            self.step()
            while self.pos - emitted >= chunk_size:
                yield self.chunk(emitted, emitted + chunk_size)
                emitted += chunk_size
        self._close_isochore()
        if emitted < self.length or self.features:
            yield self.chunk(emitted, self.length)


def iter_genome(
    length: int,
    seed: int,
    *,
    chunk_size: int = 1 << 20,
    soft_mask: bool = False,
    n_runs: bool = False,
    config: GenomeConfig | None = None,
) -> Iterator[GenomeChunk]:
    """Stream a synthetic genome of exactly ``length`` bases in chunks (see the module docstring)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    yield from _GenomeWriter(length, seed, soft_mask, n_runs, config or GenomeConfig()).chunks(chunk_size)


def make_genome(
    length: int,
    seed: int,
    *,
    soft_mask: bool = False,
    n_runs: bool = False,
    config: GenomeConfig | None = None,
) -> SyntheticGenome:
    """A whole synthetic genome with its annotations and repeat-family consensus sequences."""
    writer = _GenomeWriter(length, seed, soft_mask, n_runs, config or GenomeConfig())
    pieces: list[bytes] = []
    features: list[Feature] = []
    for chunk in writer.chunks(1 << 22):
        pieces.append(chunk.sequence)
        features.extend(chunk.features)
    features.sort(key=lambda f: (f.start, f.end, f.kind))
    return SyntheticGenome(b"".join(pieces), features, writer.families, seed)
