"""The `titans` command line: thin commands that parse options and call library functions."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from titans_cli import __version__
from titans_cli.errors import Interrupted, UserError

app = typer.Typer(
    name="titans",
    help="Stream huge documents and genomes through a Titans model whose memory learns while it reads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"titans {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """titans: test-time memorisation for long documents and genomes."""


@app.command()
def ingest(
    inputs: list[str] = typer.Argument(..., help="Files, directories, or - for stdin."),
    memory: Path = typer.Option(..., "--memory", "-m", help="The memory directory to create or extend."),
    model: str | None = typer.Option(None, "--model", help="Bundled model name or model directory."),
    kind: str = typer.Option("auto", "--kind", help="auto, text or dna."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted ingest of the same inputs."),
    force: bool = typer.Option(False, "--force", help="Read inputs again that the memory already holds."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", help="Commit every N tokens (default: every 60 seconds)."
    ),
    block_tokens: int | None = typer.Option(
        None, "--block-tokens", help="Tokens per block for a new memory (default 4096, rounded to the model)."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
) -> None:
    """Stream INPUTS through the model; its memory learns them and is committed to MEMORY."""
    from titans_cli.ingest import IngestRequest
    from titans_cli.ingest_command import run_ingest

    request = IngestRequest(
        inputs=list(inputs),
        memory=memory,
        model=model,
        kind=kind,
        resume=resume,
        force=force,
        checkpoint_tokens=checkpoint_every,
        block_tokens=block_tokens,
        device=device,
    )
    run_ingest(request, quiet, as_json)


@app.command()
def info(
    memory: Path = typer.Argument(..., help="A memory directory made by `titans ingest`."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """What a memory holds: model, sources, tokens, state digest, surprise profile."""
    from titans_cli.ingest_command import show_info

    show_info(memory, as_json)


@app.command()
def rollback(memory: Path = typer.Argument(..., help="A memory directory.")) -> None:
    """Make the newest intact commit current again (after corruption or a lost pointer file)."""
    from titans_cli.memory_store import MemoryStore

    number = MemoryStore(memory).rollback()
    stderr.print(f"{memory}: commit {number} is current")


@app.command()
def ask(
    memory: Path = typer.Argument(..., help="A memory directory made by `titans ingest`."),
    question: str | None = typer.Argument(None, help="The question (or use --questions)."),
    questions: Path | None = typer.Option(
        None, "--questions", help="A file of questions: one per line, or JSON lines."
    ),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Most tokens per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 answers greedily; > 0 samples."),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the k most likely tokens (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler: a question samples alike in any batch."),
    evidence: bool = typer.Option(
        False, "--evidence", help="Show where each answer occurs in the ingested sources (if unchanged)."
    ),
    model: str | None = typer.Option(None, "--model", help="The memory's model, if it has moved (same content)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per question on stdout."),
) -> None:
    """Answer a question against a memory; the answer alone goes to stdout. MEMORY is never modified."""
    from titans_cli.ask_command import run_ask

    if (question is None) == (questions is None):
        raise UserError("give one question, or --questions FILE")
    run_ask(memory, question, questions, max_tokens, temperature, top_k, seed, evidence, device, as_json, model)


@app.command()
def score(
    inputs: list[str] = typer.Argument(None, help="FASTA/FASTQ/GenBank/EMBL files (text with --kind text), or -."),
    out: str = typer.Option("scores.parquet", "--out", "-o", help="Table: .parquet, .tsv, or - for TSV on stdout."),
    model: str | None = typer.Option(None, "--model", help="Bundled model name or model directory."),
    kind: str = typer.Option("auto", "--kind", help="auto, dna or text."),
    memory: Path | None = typer.Option(
        None, "--memory", help="Start every record from this ingested memory; also report the score without it."
    ),
    carry: bool = typer.Option(False, "--carry", help="Keep the memory learning across records."),
    rc_average: bool = typer.Option(False, "--rc-average", help="Average forward and reverse-complement strands."),
    track: Path | None = typer.Option(None, "--track", help="Write mean bits per base per window as bedGraph."),
    window: int = typer.Option(1000, "--window", help="Window of --track, in bases (bytes for text)."),
    per_base: Path | None = typer.Option(None, "--per-base", help="Write position-level log-likelihoods (Parquet)."),
    variants: Path | None = typer.Option(None, "--variants", help="Score the SNVs and indels of this VCF[.gz]."),
    reference: str | None = typer.Option(None, "--reference", help="The genome FASTA the VCF refers to."),
    flank: int = typer.Option(4096, "--flank", help="Reference bases each side of a variant."),
    skip_mismatch: bool = typer.Option(
        False, "--skip-mismatch", help="Skip variants whose REF (or CHROM) is not in the reference."
    ),
    batch: int = typer.Option(
        32, "--batch", help="Records (or variants) scored together; records are read ahead up to BATCH × PIECE tokens."
    ),
    piece: int = typer.Option(4096, "--piece", help="Tokens per model call within a long record."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Log-likelihood, bits per base and perplexity of each record; tracks; variant effects."""
    from titans_cli.score_command import ScoreRequest, run_score, run_variants

    if variants is not None:
        if reference is None or inputs:
            raise UserError("--variants needs --reference GENOME.fa and no other inputs")
        unused = [name for name, given in (("--track", track), ("--per-base", per_base), ("--carry", carry),
                                           ("--kind", kind != "auto"), ("--window", window != 1000),
                                           ("--piece", piece != 4096)) if given]  # fmt: skip
        if unused:
            raise UserError(f"{', '.join(unused)} do not apply to --variants")
        run_variants(variants, reference, out, model, memory, flank, rc_average, skip_mismatch, batch, device,
                     as_json)  # fmt: skip
        return
    if not inputs:
        raise UserError("give the sequences to score (or --variants FILE.vcf --reference GENOME.fa)")
    request = ScoreRequest(list(inputs), out, model, kind, memory, carry, rc_average, track, window, per_base,
                           batch, piece, device)  # fmt: skip
    run_score(request, as_json)


@app.command()
def train(
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory: config, log, checkpoints, model/."),
    preset: str | None = typer.Option(
        None, "--preset", help="text-tiny, text-tiny-mac, dna-tiny, dna-tiny-mac, text-small or dna-small."
    ),
    config: Path | None = typer.Option(None, "--config", help="A TrainConfig as JSON or TOML."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: int | None = typer.Option(None, "--steps", help="Override the schedule length of a new run."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop this session once the run reaches step N."),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop this session after M minutes."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto (torchrun: one GPU per rank)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (the log file is still written)."),
) -> None:
    """Train a model (on several GPUs or nodes: launch this command with torchrun)."""
    from titans_cli.training.console import resolve_config, run_training
    from titans_cli.training.trainer import TrainRun

    resolved = resolve_config(preset, config, steps)
    if print_config:
        if resolved is None:
            raise UserError("--print-config needs --preset or --config")
        print(resolved.to_json())
        return
    if out is None:
        raise UserError("--out DIR is required: the run directory for the config, log, checkpoints and model")
    run_training(TrainRun(out=out, config=resolved, resume=resume, max_steps=max_steps, max_minutes=max_minutes,
                          device=device, command=" ".join(["titans", *sys.argv[1:]])), quiet)  # fmt: skip


@app.command("eval")
def evaluate(
    task: str = typer.Argument(..., help="niah, kv, babi or dna."),
    model: str = typer.Option(..., "--model", help="Bundled model name or model directory."),
    lengths: str | None = typer.Option(
        None, "--lengths", help="Document lengths, e.g. 4k,16k,1m (k = 1024; default 1k,4k,16k; dna 256k)."
    ),
    n: int | None = typer.Option(None, "--n", help="Examples per task and length (default 10; dna: genomes, 1)."),
    no_memory: bool = typer.Option(False, "--no-memory", help="Freeze the memory: attention only (ablation)."),
    needle: str = typer.Option("number", "--needle", help="What niah needles carry: number, word or uuid."),
    seed: int = typer.Option(0, "--seed", help="Evaluation seed (held-out examples are drawn from it)."),
    piece: int = typer.Option(4096, "--piece", help="Tokens per call while reading a document."),
    batch: int = typer.Option(1, "--batch", help="Documents read together (text tasks)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, or auto."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown (for model cards)."),
) -> None:
    """Measure a model: QA accuracy per task and length, or DNA bits per base against gzip, xz and Markov."""
    from titans_cli.evaluation.console import EvalRequest, run_eval

    request = EvalRequest(task=task, model=model, lengths=lengths, n=n, memory=not no_memory, seed=seed,
                          piece_tokens=piece, batch_size=batch, device=device, quiet=quiet,
                          markdown=as_markdown, needle=needle)  # fmt: skip
    run_eval(request, as_json)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: maps user errors to exit 2 and interrupts to 130."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if debug:  # global: accepted before or after the command (`titans score ... --debug`)
        args = ["--debug", *(a for a in args if a != "--debug")]
    try:
        app(args=args, prog_name="titans", standalone_mode=False)
    except UserError as err:
        if debug:
            raise
        stderr.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)  # one line
        return 2
    except KeyboardInterrupt:
        stderr.print("interrupted")
        return 130
    except Interrupted:
        return 130
    except typer.Exit as ex:
        return ex.exit_code
    except typer.Abort:
        return 130
    except typer.TyperException as err:  # usage errors: unknown command, bad option value
        err.show()
        return 2
    except Exception as err:
        if debug:
            raise
        message = f"{type(err).__name__}: {escape(str(err))} (run with --debug for the traceback)"
        stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
