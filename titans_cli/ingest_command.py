"""Terminal side of `titans ingest` and `titans info`: progress, Ctrl-C, and rendering."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from titans_cli.errors import Interrupted
from titans_cli.ingest import IngestProgress, IngestRequest, ingest
from titans_cli.memory_info import describe_memory, sparkline
from titans_cli.model_registry import pick_device

stderr = Console(stderr=True)


def run_ingest(request: IngestRequest, quiet: bool, as_json: bool = False) -> None:
    """Run an ingest with progress on stderr; Ctrl-C (or SIGTERM) stops it after a commit."""
    stop = {"requested": False}

    def request_stop(signum, frame):  # finish the current block, commit, then stop
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        stderr.print("stopping after the current block…")

    old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    request.device = pick_device(request.device)
    request.should_stop = lambda: stop["requested"]
    try:
        if quiet:
            report = ingest(request)
        elif stderr.is_terminal:
            report = _with_progress_bar(request)
        else:
            report = _with_log_lines(request)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if as_json:
        fields = dataclasses.asdict(report)
        fields["memory"] = str(report.memory)
        print(json.dumps(fields))
    stderr.print(
        f"{report.memory}: +{report.tokens_added:,} tokens ({report.total_tokens:,} in all) in "
        f"{report.seconds:.1f}s, model {report.model}, {report.commits} commit(s)"
    )
    if report.interrupted:
        again = " ".join([*request.inputs, "--memory", str(request.memory), "--resume"])
        stderr.print(f"interrupted; what was read is committed. Continue with: titans ingest {again}")
        raise Interrupted


def _with_progress_bar(request: IngestRequest):
    columns = [TextColumn("ingest"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn(), TextColumn("surprise {task.fields[surprise]}")]  # fmt: skip
    with Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task("ingest", total=None, rate="", surprise="")

        def show(p: IngestProgress) -> None:
            bar.update(task, completed=p.bytes_done, total=p.bytes_total,
                       rate=f"{p.tokens_per_s:,.0f} tok/s", surprise=f"{p.surprise:.3f}")  # fmt: skip

        request.on_progress = show
        return ingest(request)


def _with_log_lines(request: IngestRequest, every: float = 5.0):
    last = [time.monotonic()]

    def log(p: IngestProgress) -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            total = f"/{p.bytes_total:,}" if p.bytes_total else ""
            print(f"ingest: {p.bytes_done:,}{total} bytes, {p.tokens:,} tokens, {p.tokens_per_s:,.0f} tok/s, "
                  f"surprise {p.surprise:.3f}", file=sys.stderr, flush=True)  # fmt: skip

    request.on_progress = log
    return ingest(request)


def show_info(memory: Path, as_json: bool) -> None:
    info = describe_memory(memory)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out = Console()
    out.print(f"[bold]{info['memory']}[/]  (format v{info['format_version']}, commit {info['commit']})")
    out.print(f"model        {info['model']['name']}  {info['model']['hash'][:23]}…")
    out.print(f"kind         {info['kind']}")
    out.print(f"created      {info['created']}   updated {info['updated']}")
    out.print(f"tokens       {info['tokens']:,}")
    out.print(f"on disk      {info['state_bytes_on_disk']:,} bytes")
    out.print(f"state digest {info['state_digest']}")
    table = Table("source", "size", "tokens", "status", "sha256")
    for s in info["sources"]:
        status = "complete" if s["complete"] else f"stopped at record {s['resume_record']}, offset {s['resume_offset']}"
        table.add_row(s["path"], f"{s['size']:,}", f"{s['tokens']:,}", status, (s["sha256"] or "")[:12])
    out.print(table)
    profile = [p["mean_surprise"] for p in info["surprise_profile"]]
    if profile:
        out.print(f"surprise     {sparkline(profile)}  ({min(profile):.4g} … {max(profile):.4g})")
