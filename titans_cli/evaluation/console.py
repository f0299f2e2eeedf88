"""Terminal side of `titans eval`: resolve the model, show progress, render the results table or JSON."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from titans_cli.errors import UserError
from titans_cli.evaluation.dna_eval import DnaEval, evaluate_dna
from titans_cli.evaluation.suites import FAMILIES, draw_example
from titans_cli.evaluation.text_eval import TextEval, evaluate_text
from titans_cli.model_registry import pick_device, resolve_model
from titans_cli.tasks.niah import NEEDLE_KINDS, NeedleKind

TASKS = (*FAMILIES, "dna")
DEFAULT_LENGTHS = {"text": "1k,4k,16k", "dna": "256k"}
DEFAULT_N = {"text": 10, "dna": 1}
_SIZE = re.compile(r"^(\d+)([km]?)$")

stderr = Console(stderr=True)


@dataclass
class EvalRequest:
    task: str
    model: str
    lengths: str | None = None  # "4k,16k,1m" (k = 1024)
    n: int | None = None
    memory: bool = True
    seed: int = 0
    piece_tokens: int = 4096
    batch_size: int = 1
    device: str = "auto"
    markdown: bool = False  # print the table as Markdown
    needle: str = "number"  # what NIAH needles carry: number, word or uuid
    quiet: bool = False


def parse_lengths(text: str) -> list[int]:
    """"4k,16k,1m" → [4096, 16384, 1048576]."""
    lengths = []
    for part in text.replace(" ", "").lower().split(","):
        match = _SIZE.match(part)
        if not match or int(match[1]) == 0:
            raise UserError(f"--lengths: {part!r} is not a length such as 512, 4k or 1m")
        lengths.append(int(match[1]) * {"": 1, "k": 1024, "m": 1024**2}[match[2]])
    return lengths


def _check_lengths(task: str, lengths: list[int], needle: NeedleKind) -> None:
    """Refuse, before any model work, a length too short to hold the task's example."""
    for length in lengths:
        if task == "dna":
            if length < 2:
                raise UserError("--lengths: a genome needs at least 2 bases")
            continue
        for subtask in FAMILIES[task]:
            try:
                draw_example(task, subtask, length, 0, "eval", needle)
            except ValueError as err:
                raise UserError(f"--lengths: {length} is too short for {task}/{subtask} ({err})") from err


def run_eval(request: EvalRequest, as_json: bool) -> None:
    if request.task not in TASKS:
        raise UserError(f"unknown task {request.task!r}: choose one of {', '.join(TASKS)}")
    kind = "dna" if request.task == "dna" else "text"
    lengths = parse_lengths(request.lengths or DEFAULT_LENGTHS[kind])
    n = DEFAULT_N[kind] if request.n is None else request.n
    if n < 1 or request.piece_tokens < 1 or request.batch_size < 1:
        raise UserError("--n, --piece and --batch must be at least 1")
    if request.needle not in NEEDLE_KINDS:
        raise UserError(f"--needle: {request.needle!r} is not one of {', '.join(NEEDLE_KINDS)}")
    if request.needle != "number" and request.task != "niah":
        raise UserError("--needle applies to the niah task only")
    _check_lengths(request.task, lengths, request.needle)  # type: ignore[arg-type]
    ref = resolve_model(request.model)
    if (ref.config.tokenizer == "dna") != (kind == "dna"):
        reads = "DNA" if ref.config.tokenizer == "dna" else "text"
        raise UserError(f"model {ref.name} reads {reads}; task {request.task} needs a {kind} model")
    device = pick_device(request.device)
    model = ref.load(device)
    model.memory_learning = request.memory

    units = len(lengths) * n * (1 if kind == "dna" else len(FAMILIES[request.task]))
    with Progress(TextColumn(f"eval {request.task}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, disable=request.quiet or not stderr.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("eval", total=units)

        def advance() -> None:
            bar.advance(task)

        if kind == "dna":
            result: TextEval | DnaEval = evaluate_dna(
                model, lengths, n, request.seed, request.piece_tokens, on_genome=advance
            )
        else:
            result = evaluate_text(model, request.task, lengths, n, request.seed, request.piece_tokens,
                                   request.batch_size, on_example=advance, needle=request.needle)  # fmt: skip
    if as_json:
        print(json.dumps({"task": request.task, "model": ref.name, "model_hash": ref.content_hash,
                          **to_dict(result)}, indent=2))  # fmt: skip
        return
    title = f"{request.task} · {ref.name} · {'memory on' if request.memory else 'memory off (--no-memory)'}"
    table = text_table(result, title) if isinstance(result, TextEval) else dna_table(result, title)
    if request.markdown:
        print(markdown(table))
    else:
        Console().print(table)


def markdown(table: Table) -> str:
    """A rich table as a Markdown table (title above, caption below), for model cards and BENCHMARKS.md."""

    def plain(cell) -> str:
        return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)

    columns = [[plain(c.header), *(plain(cell) for cell in c.cells)] for c in table.columns]
    rows = list(zip(*columns))
    lines = [f"**{plain(table.title)}**", ""] if table.title else []
    lines += ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    if table.caption:
        lines += ["", plain(table.caption)]
    return "\n".join(lines)


def to_dict(result: TextEval | DnaEval) -> dict:
    fields = dataclasses.asdict(result)
    if isinstance(result, DnaEval):
        for score, row in zip(result.scores, fields["scores"]):
            row["markov_best_k"] = score.markov_best_k
    return fields


def _size(n: int) -> str:
    for unit, scale in (("m", 1024**2), ("k", 1024)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def text_table(result: TextEval, title: str) -> Table:
    lengths = sorted({s.length for s in result.scores})
    table = Table("task", *(_size(length) for length in lengths), title=title)
    for task in dict.fromkeys(s.task for s in result.scores):
        row = {s.length: s for s in result.scores if s.task == task}
        table.add_row(task, *(f"{row[length].accuracy:.0%} ({row[length].correct}/{row[length].n})"
                              for length in lengths))  # fmt: skip
    return table


def dna_table(result: DnaEval, title: str) -> Table:
    """Methods down, lengths across: bits per base over all bases and over far repeat copies."""
    columns = []
    for score in result.scores:
        columns += [f"{_size(score.length)} all", f"{_size(score.length)} repeats"]
    table = Table("method", *columns, title=title)
    table.add_row("model", *(f"{v:.3f}" for s in result.scores for v in (s.model, s.model_repeats)))
    for k in result.scores[0].markov if result.scores else ():
        cells = []
        for s in result.scores:
            best = "[bold]" if k == s.markov_best_k else ""
            cells += [f"{best}{s.markov[k]:.3f}", f"{s.markov_repeats[k]:.3f}"]
        table.add_row(f"Markov k={k}", *cells)
    for name in ("gzip", "xz"):
        table.add_row(name, *(cell for s in result.scores for cell in (f"{getattr(s, name):.3f}", "")))
    counts = ", ".join(f"{_size(s.length)}: {s.genomes} genome(s), {s.repeat_bases:,} of {s.bases:,} bases"
                       for s in result.scores)  # fmt: skip
    table.caption = (f"bits per base (best Markov order in bold); repeats: segmental duplication, inverted and "
                     f"interspersed repeat copies over {result.attention_span} bases from their source ({counts})")
    return table
