"""Variant effects: log-likelihood of a window around each variant with the ALT allele minus with the REF allele.

For an SNV, MNV or indel of up to 50 bp at 1-based POS, the window is `flank` reference bases on each side
around the allele. Both windows share the left flank, so (the model being causal) the difference comes
from the allele and the right flank read after it. Negative deltas mean the model finds the ALT sequence
less likely. With `rc_average` both strands are scored and the delta is their mean.

The VCF and the reference are streamed: one chromosome of the reference is held at a time, with the
VCF lines of that chromosome. Multi-allelic records give one row per ALT allele; symbolic alleles
(<DEL>, *, breakends), missing ALTs (.) and longer alleles are skipped and counted. At POS 1 there is no
left flank, so the allele's first base is the window's first and unscored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from titans_cli.errors import UserError
from titans_cli.models import TitansModel
from titans_cli.readers import open_input
from titans_cli.readers.nucleotides import reverse_complement
from titans_cli.scoring import ScoreOptions, Scorer
from titans_cli.vcf import VcfRecord, is_scorable, read_vcf

MAX_ALLELE = 50
MAX_NOTES = 10


@dataclass
class VariantOptions:
    flank: int = 4096
    rc_average: bool = False
    skip_mismatch: bool = False
    batch: int = 32  # variants whose windows are scored together


@dataclass
class VariantCounts:
    scored: int = 0
    skipped_allele: int = 0  # symbolic, missing or longer than MAX_ALLELE
    skipped_mismatch: int = 0  # REF differs from the reference, or CHROM is not in it (--skip-mismatch)
    notes: list[str] = field(default_factory=list)  # the first MAX_NOTES mismatches, for the user

    def skip_mismatch(self, alleles: int, message: str) -> None:
        self.skipped_mismatch += alleles
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)


def variant_schema(rc_average: bool) -> pa.Schema:
    """The columns of the variant table (natural-log likelihoods; the deltas are alt minus ref)."""
    fields = [("CHROM", pa.string()), ("POS", pa.int64()), ("ID", pa.string()), ("REF", pa.string()),
              ("ALT", pa.string()), ("ref_loglik", pa.float64()), ("alt_loglik", pa.float64()), ("delta", pa.float64())]
    if rc_average:
        fields += [("delta_forward", pa.float64()), ("delta_reverse", pa.float64())]
    return pa.schema(fields)


def score_variants(
    model: TitansModel, vcf: Path, reference: str, options: VariantOptions, counts: VariantCounts
) -> Iterator[dict]:
    """One row per scorable (variant, ALT), in VCF order: CHROM, POS, ID, REF, ALT, logliks and delta.

    The VCF is streamed a run of same-CHROM lines at a time (VCFs are grouped by chromosome), and the
    reference sequence of that chromosome is found by scanning the FASTA on from the last one, so a VCF
    in the reference's order reads the reference once.
    """
    scorer = Scorer(model, None, ScoreOptions())
    genome = ReferenceGenome(reference)
    try:
        for chrom, group in itertools.groupby(read_vcf(vcf), key=lambda r: r.chrom):
            sequence = genome.sequence(chrom)
            if sequence is None:
                first = next(group)
                message = f"{vcf}:{first.line}: chromosome {chrom!r} is not in {reference}"
                if not options.skip_mismatch:
                    raise UserError(f"{message}; pass --skip-mismatch to skip its variants")
                counts.skip_mismatch(len(first.alts) + sum(len(r.alts) for r in group), message)
                continue
            yield from _score_chromosome(scorer, vcf, sequence, group, options, counts)
    finally:
        genome.close()


class ReferenceGenome:
    """One reference record at a time, by name, scanning the FASTA forward (and once more from the top)."""

    def __init__(self, path: str):
        self.path = path
        self.reader = open_input([path], kind="dna", piece_size=1 << 20)
        self.pieces = iter(self.reader)
        self.name: str | None = None
        self.current = b""
        self.seen: set[str] = set()  # every record name read so far
        self.read_to_end = False  # a reader reached the end: `seen` holds every name in the file

    def sequence(self, name: str) -> bytes | None:
        if name == self.name:
            return self.current
        if self.read_to_end and name not in self.seen:  # no rescan for a chromosome the file lacks
            return None
        for restarted in (False, True):
            if restarted:
                self.close()
                self.reader = open_input([self.path], kind="dna", piece_size=1 << 20)
                self.pieces = iter(self.reader)
            while (record := self._next_record()) is not None:
                if record == name:
                    return self.current
        return None

    def _next_record(self) -> str | None:
        """Read the next record whole into `current`; its name, or None at the end of the file."""
        parts: list[bytes] = []
        for piece in self.pieces:
            parts.append(piece.data)
            if piece.record_end:
                self.name, self.current = piece.record, b"".join(parts)
                self.seen.add(self.name)
                return self.name
        self.name, self.current, self.read_to_end = None, b"", True
        return None

    def close(self) -> None:
        self.reader.close()


def _score_chromosome(scorer: Scorer, vcf: Path, sequence: bytes, records: Iterable[VcfRecord],
                      options: VariantOptions, counts: VariantCounts) -> Iterator[dict]:  # fmt: skip
    pending: list[tuple[VcfRecord, str, bytes, bytes]] = []
    for record in records:
        start = record.pos - 1
        actual = sequence[start : start + len(record.ref)].decode()
        if actual != record.ref:
            message = (f"{vcf}:{record.line}: variant {record.chrom}:{record.pos} REF {record.ref} does not match "
                       f"the reference ({actual or 'past its end'})")  # fmt: skip
            if not options.skip_mismatch:
                raise UserError(f"{message}; check the reference build, or pass --skip-mismatch")
            counts.skip_mismatch(len(record.alts), message)
            continue
        left = sequence[max(0, start - options.flank) : start]
        right = sequence[start + len(record.ref) : start + len(record.ref) + options.flank]
        for alt in record.alts:
            if not is_scorable(record.ref, alt, MAX_ALLELE):
                counts.skipped_allele += 1
                continue
            pending.append((record, alt, left + record.ref.encode() + right, left + alt.encode() + right))
            if len(pending) == options.batch:
                yield from _score_batch(scorer, pending, options.rc_average, counts)
                pending = []
    yield from _score_batch(scorer, pending, options.rc_average, counts)


def _score_batch(scorer: Scorer, batch, rc_average: bool, counts: VariantCounts) -> Iterator[dict]:
    if not batch:
        return
    windows = [w for _, _, ref, alt in batch for w in (ref, alt)]
    if rc_average:
        windows += [reverse_complement(w) for w in windows]
    totals = [float(np.nansum(v)) for v in scorer.score_sequences(windows)]
    n = len(batch)
    for i, (record, alt, _, _) in enumerate(batch):
        ref_ll, alt_ll = totals[2 * i], totals[2 * i + 1]
        row = {"CHROM": record.chrom, "POS": record.pos, "ID": record.id, "REF": record.ref, "ALT": alt,
               "ref_loglik": ref_ll, "alt_loglik": alt_ll, "delta": alt_ll - ref_ll}  # fmt: skip
        if rc_average:
            reverse = totals[2 * n + 2 * i + 1] - totals[2 * n + 2 * i]
            row.update(delta_forward=row["delta"], delta_reverse=reverse, delta=(row["delta"] + reverse) / 2)
        counts.scored += 1
        yield row
