"""The `titans` command line: thin commands that parse options and call library functions."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from titans_cli import __version__
from titans_cli.errors import UserError

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
