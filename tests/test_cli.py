import subprocess
import sys

import pytest

from titans_cli import __version__
from titans_cli.cli import main
from titans_cli.errors import UserError


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"titans {__version__}"


def test_help_lists_the_tool(capsys):
    assert main(["--help"]) == 0
    assert "Stream huge documents" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2


def test_console_script_runs():
    cmd = [sys.executable, "-m", "titans_cli.cli", "--version"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("titans ")


def test_debug_is_accepted_after_the_command(tmp_path):
    (tmp_path / "e.fa").write_bytes(b"")
    assert main(["score", str(tmp_path / "e.fa"), "-o", "-"]) == 2
    with pytest.raises(UserError, match="the input is empty"):  # --debug: the traceback, not the one line
        main(["score", str(tmp_path / "e.fa"), "-o", "-", "--debug"])
