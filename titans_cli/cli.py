"""The `titans` command line: thin commands that parse options and call library functions."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

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


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: maps user errors to exit 2 and interrupts to 130."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="titans", standalone_mode=False)
    except UserError as err:
        if debug:
            raise
        stderr.print(f"[bold red]error:[/] {err}", highlight=False)
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
        stderr.print(f"[bold red]error:[/] {type(err).__name__}: {err} (run with --debug for the traceback)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
