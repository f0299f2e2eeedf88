"""Variant effects: log-likelihood of a window around each variant with the ALT allele minus with the REF allele.

For an SNV, MNV or indel of up to 50 bp at 1-based POS, the window is `flank` reference bases on each side
around the allele. Both windows share the left flank, so (the model being causal) the difference comes
from the allele and the right flank read after it. Negative deltas mean the model finds the ALT sequence
less likely. With `rc_average` both strands are scored and the delta is their mean.

The reference is streamed one record at a time, and only records that carry variants are held (one
chromosome in memory at a time). Multi-allelic records give one row per ALT allele; symbolic alleles
(<DEL>, *, breakends), missing ALTs (.) and alleles longer than 50 bp are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from titans_cli.errors import UserError
from titans_cli.models import TitansModel
from titans_cli.readers import open_input
from titans_cli.scoring import ScoreOptions, Scorer, reverse_complement
from titans_cli.vcf import VcfRecord, is_scorable, read_vcf

MAX_ALLELE = 50


@dataclass
class VariantOptions:
    flank: int = 4096
    rc_average: bool = False
    skip_mismatch: bool = False
    batch: int = 8  # variants whose windows are scored together


@dataclass
class VariantCounts:
    scored: int = 0
    skipped_allele: int = 0  # symbolic, missing or longer than MAX_ALLELE
    skipped_mismatch: int = 0  # REF differs from the reference, or CHROM is not in it (--skip-mismatch)
    notes: list[str] = field(default_factory=list)


def variant_columns(rc_average: bool) -> list[str]:
    columns = ["CHROM", "POS", "ID", "REF", "ALT", "ref_loglik", "alt_loglik", "delta"]
    return columns + (["delta_forward", "delta_reverse"] if rc_average else [])


def score_variants(
    model: TitansModel, vcf: Path, reference: str, options: VariantOptions, counts: VariantCounts
) -> Iterator[dict]:
    """One row per scorable (variant, ALT) in reference order: CHROM, POS, ID, REF, ALT, logliks and delta."""
    by_chrom: dict[str, list[VcfRecord]] = {}
    for record in read_vcf(vcf):
        by_chrom.setdefault(record.chrom, []).append(record)
    scorer = Scorer(model, None, ScoreOptions())
    with open_input([reference], kind="dna", piece_size=1 << 20) as reader:
        sequence = bytearray()
        for piece in reader:
            if piece.record in by_chrom:
                sequence += piece.data
            if piece.record_end:
                if piece.record in by_chrom:
                    yield from _score_chromosome(scorer, vcf, bytes(sequence), by_chrom.pop(piece.record), options,
                                                 counts)  # fmt: skip
                sequence = bytearray()
    for chrom, records in by_chrom.items():
        message = f"{vcf}:{records[0].line}: chromosome {chrom!r} is not in {reference}"
        if not options.skip_mismatch:
            raise UserError(f"{message}; pass --skip-mismatch to skip its variants")
        counts.skipped_mismatch += sum(len(r.alts) for r in records)
        counts.notes.append(message)


def _score_chromosome(scorer: Scorer, vcf: Path, sequence: bytes, records: list[VcfRecord],
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
            counts.skipped_mismatch += len(record.alts)
            counts.notes.append(message)
            continue
        left = sequence[max(0, start - options.flank) : start]
        right = sequence[start + len(record.ref) : start + len(record.ref) + options.flank]
        for alt in record.alts:
            if len(record.ref) > MAX_ALLELE or not is_scorable(alt, MAX_ALLELE):
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
