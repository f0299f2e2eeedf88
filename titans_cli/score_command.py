"""`titans score`: wires the input, the model (or a memory), the scorer and the outputs together."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from rich.console import Console

from titans_cli.errors import UserError
from titans_cli.model_registry import default_model, pick_device, resolve_model
from titans_cli.readers import open_input
from titans_cli.saved_memory import load_memory
from titans_cli.score_output import BedGraphWriter, PerBaseWriter, TableWriter, check_writable, table_format
from titans_cli.scoring import LN2, LineRows, RecordRows, ScoredPiece, ScoreOptions, Scorer, Totals, WindowTrack

stderr = Console(stderr=True)


@dataclass
class ScoreRequest:
    inputs: list[str]
    out: str = "scores.parquet"
    model: str | None = None  # default: the memory's model, else dna-tiny / text-tiny by input kind
    kind: str = "auto"
    memory: Path | None = None
    carry: bool = False
    rc_average: bool = False
    track: Path | None = None
    window: int = 1000
    per_base: Path | None = None
    batch_records: int = 32
    piece_tokens: int = 4096
    device: str = "auto"


@dataclass
class ScoreSummary:
    records: int
    tokens: int
    scored: int
    loglik: float
    bits_per_token: float
    loglik_without_memory: float | None
    seconds: float
    out: str
    unit: str  # "base" or "byte"


def score(request: ScoreRequest) -> ScoreSummary:
    """Score every record (DNA) or line (text) of the inputs; write the table and the optional tracks."""
    _check(request)
    reader = open_input(request.inputs, kind=request.kind, piece_size=request.piece_tokens)
    kind = reader.kind
    options = ScoreOptions(request.piece_tokens, request.batch_records, request.carry, request.rc_average)
    if request.memory is not None:
        loaded = load_memory(request.memory, request.device, request.model)
        ref, model, start = loaded.model_ref, loaded.model, loaded.state
    else:
        ref = resolve_model(request.model or default_model(kind))
        model, start = ref.load(pick_device(request.device)).eval(), None
    model_kind = "dna" if model.config.tokenizer == "dna" else "text"
    if model_kind != kind:
        reader.close()
        hint = "pass --kind text to score the files as bytes" if model_kind == "text" else "give FASTA/FASTQ input"
        what = (f"{request.memory} holds {model_kind} read by {ref.name}" if request.memory
                else f"the model {ref.name} reads {model_kind}")  # fmt: skip
        raise UserError(f"{what}, but the input is {kind}: {hint}")
    if request.rc_average and kind != "dna":
        raise UserError("--rc-average needs DNA input")

    started = time.monotonic()
    with reader:
        if start is None:
            scored: Iterator = ((piece, None) for piece in Scorer(model, None, options).score(reader))
        else:  # the same pieces through a fresh memory too, in lockstep (both batch alike), for the baseline
            first, second = itertools.tee(reader)
            scored = zip(Scorer(model, start, options).score(first), Scorer(model, None, options).score(second))
        summary = _write(request, kind, scored)
    summary.seconds = time.monotonic() - started
    return summary


def _check(request: ScoreRequest) -> None:
    table_format(request.out)
    if request.per_base is not None and table_format(str(request.per_base)) != "parquet":
        raise UserError(f"{request.per_base}: --per-base writes Parquet; name the file .parquet")
    for path, flag in ((request.out, "--out"), (request.track, "--track"), (request.per_base, "--per-base")):
        if path is not None:
            check_writable(str(path), flag)
    if request.window < 1 or request.batch_records < 1 or request.piece_tokens < 1:
        raise UserError("--window, --batch and --piece must be ≥ 1")
    if request.carry and request.memory is not None:
        raise UserError("--carry and --memory do not go together: --memory starts every record from MEM")
    if request.carry and request.rc_average:
        raise UserError("--carry and --rc-average do not go together: the reverse strand is read from a fresh memory")


def _write(request: ScoreRequest, kind: str, scored: Iterator[tuple[ScoredPiece, ScoredPiece | None]]) -> ScoreSummary:
    """Consume the scored pieces once, writing rows, track and per-base values as they complete."""
    unit = "base" if kind == "dna" else "byte"
    rows_of = RecordRows if kind == "dna" else LineRows
    rows, baseline_rows = rows_of(), rows_of()
    schema = pa.Table.from_pylist([Totals("", "").row(unit)]).schema  # an empty record's row gives the types
    if request.memory is not None:
        for name in (f"bits_per_{unit}_without_memory", "memory_gain_bits"):
            schema = schema.append(pa.field(name, pa.float64()))
    table = TableWriter(request.out, schema)
    track = BedGraphWriter(str(request.track), "titans", f"bits per {unit}") if request.track else None
    windows = WindowTrack(request.window)
    per_base = PerBaseWriter(str(request.per_base), kind == "dna") if request.per_base else None
    overall, overall_without = Totals("all", "", digest=None), Totals("all", "", digest=None)
    complete = False
    try:
        for piece, baseline in scored:
            overall.add(piece.data, piece.loglik)
            if track is not None:
                for window in windows.add(piece):
                    track.write(*window)
            if per_base is not None:
                per_base.write(piece.record, piece.offset, piece.data, piece.loglik)
            done = rows.add(piece)
            if baseline is not None:  # the same piece scored without the memory
                overall_without.add(baseline.data, baseline.loglik)
                references = baseline_rows.add(baseline)
            for i, totals in enumerate(done):
                row = totals.row(unit)
                if baseline is not None:
                    row[f"bits_per_{unit}_without_memory"] = references[i].bits
                    row["memory_gain_bits"] = references[i].bits - totals.bits
                table.write(row)
        complete = True
    finally:
        for writer in (table, track, per_base):
            if writer is not None:
                writer.close(complete)
    return ScoreSummary(table.count, overall.length, overall.scored, overall.loglik, overall.bits,
                        overall_without.loglik if request.memory else None, 0.0, request.out, unit)  # fmt: skip


def print_summary(summary: ScoreSummary, as_json: bool) -> None:
    unit = summary.unit
    data = {
        "rows": summary.records, "tokens": summary.tokens, "scored": summary.scored,
        "total_loglik": summary.loglik, f"bits_per_{unit}": summary.bits_per_token,
        "seconds": round(summary.seconds, 3),
        "tokens_per_s": round(summary.tokens / summary.seconds, 1) if summary.seconds else None, "out": summary.out,
    }  # fmt: skip
    without = f"bits_per_{unit}_without_memory"
    if summary.loglik_without_memory is not None and summary.scored:
        data[without] = -summary.loglik_without_memory / LN2 / summary.scored
    if as_json:
        print(json.dumps(data))
        return
    bits = "n/a" if math.isnan(summary.bits_per_token) else f"{summary.bits_per_token:.4f}"
    extra = ""
    if without in data:
        extra = f", {data[without]:.4f} without the memory"
    stderr.print(f"scored {summary.scored:,} of {summary.tokens:,} {unit}s in {summary.records:,} rows: "
                 f"{bits} bits per {unit}{extra}; {summary.seconds:.1f} s → {summary.out}")  # fmt: skip


def run_score(request: ScoreRequest, as_json: bool) -> None:
    if as_json and request.out == "-":
        raise UserError("--json prints a summary on stdout, which --out - already uses for the table")
    print_summary(score(request), as_json)


def run_variants(vcf: Path, reference: str, out: str, model: str | None, memory: Path | None, flank: int,
                 rc_average: bool, skip_mismatch: bool, batch: int, device: str, as_json: bool) -> None:  # fmt: skip
    """Score a VCF's variants against the reference; the table has one row per (variant, ALT allele)."""
    from titans_cli.variant_scoring import VariantCounts, VariantOptions, score_variants, variant_schema

    if flank < 1 or batch < 1:
        raise UserError("--flank and --batch must be ≥ 1")
    if memory is not None:
        raise UserError("--variants scores against the model alone; --memory is not used with it")
    if as_json and out == "-":
        raise UserError("--json prints a summary on stdout, which --out - already uses for the table")
    table_format(out)
    check_writable(out, "--out")
    loaded = resolve_model(model or default_model("dna")).load(pick_device(device)).eval()
    if loaded.config.tokenizer != "dna":
        raise UserError("--variants needs a DNA model")
    counts = VariantCounts()
    started = time.monotonic()
    table = TableWriter(out, variant_schema(rc_average))
    complete = False
    try:
        for row in score_variants(loaded, vcf, reference, VariantOptions(flank, rc_average, skip_mismatch, batch),
                                  counts):  # fmt: skip
            table.write(row)
        complete = True
    finally:
        table.close(complete)
    for note in counts.notes:
        stderr.print(f"skipped: {note}", highlight=False)
    summary = {"variants_scored": counts.scored, "skipped_alleles": counts.skipped_allele,
               "skipped_mismatches": counts.skipped_mismatch, "seconds": round(time.monotonic() - started, 3),
               "out": out}  # fmt: skip
    if as_json:
        print(json.dumps(summary))
    else:
        stderr.print(f"scored {counts.scored} variant alleles; skipped {counts.skipped_allele} symbolic, missing or "
                     f"over-50-bp alleles and {counts.skipped_mismatch} mismatches → {out}")  # fmt: skip
