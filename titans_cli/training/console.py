"""Terminal side of `titans train`: Ctrl-C handling, a progress bar (or log lines), the closing summary.

Only rank 0 of a distributed run talks; every rank stops at the same step when any is asked to.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from titans_cli.errors import Interrupted, UserError
from titans_cli.training.config import TrainConfig, load_train_config
from titans_cli.training.presets import PRESETS, preset
from titans_cli.training.trainer import TrainReport, TrainRun, train

stderr = Console(stderr=True)


def resolve_config(preset_name: str | None, path: Path | None, steps: int | None) -> TrainConfig | None:
    """The config a user asked for: a preset or a file (None when neither, as for a plain --resume)."""
    if preset_name and path:
        raise UserError("give --preset or --config, not both")
    if preset_name:
        if preset_name not in PRESETS:
            raise UserError(f"unknown preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
        config = preset(preset_name)
    elif path:
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            config = load_train_config(path)
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}: {err}") from err
    else:
        config = None
    if steps is not None:
        if config is None:
            raise UserError("--steps needs --preset or --config")
        try:
            config = dataclasses.replace(config, steps=steps)
        except ValueError as err:
            raise UserError(f"--steps: {err}") from err
    return config


def run_training(run: TrainRun, quiet: bool) -> TrainReport:
    stop = {"requested": False}

    def request_stop(signum, frame):  # finish the step, checkpoint, write the model, then stop
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        stderr.print("stopping after the current step…")

    old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    run.should_stop = lambda: stop["requested"]
    talk = not quiet and os.environ.get("RANK", "0") == "0"
    try:
        if talk and stderr.is_terminal:
            report = _with_progress_bar(run)
        else:
            run.on_event = _log_line if talk else run.on_event
            report = train(run)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if talk:
        loss = f", loss {report.loss:.4f}" if report.loss is not None else ""
        stderr.print(f"{report.out}: step {report.step:,}/{report.steps:,}, {report.tokens:,} tokens{loss}, "
                     f"{report.seconds / 60:.1f} min; model in {report.model_dir}")  # fmt: skip
    if report.interrupted:
        if talk:
            stderr.print(f"interrupted; checkpointed. Continue with: titans train --out {report.out} --resume")
        raise Interrupted
    return report


def _describe(event: dict[str, Any]) -> str | None:
    kind = event["event"]
    if kind == "train":
        return (f"step {event['step']:,}: loss {event['loss']:.4f}, lr {event['lr']:.2e}, "
                f"{event['tokens_per_s']:,.0f} tok/s, seq {event['seq_len']}")  # fmt: skip
    if kind == "eval":
        accuracy = ", ".join(f"{k} {v:.0%}" for k, v in event["accuracy"].items())
        bits = ", ".join(f"{k} {v:.3f} bits/token" for k, v in event["bits_per_token"].items())
        return f"eval at step {event['step']:,}: loss {event['loss']:.4f}" + "".join(
            f"; {part}" for part in (accuracy, bits) if part
        )
    if kind in ("start", "resume"):
        return (f"{kind} at step {event['step']:,} of {event['steps']:,}: {event['parameters']:,} parameters, "
                f"{event['world_size']} rank(s) on {event['device']}")  # fmt: skip
    return None


def _log_line(event: dict[str, Any]) -> None:
    line = _describe(event)
    if line:
        print(f"train: {line}", file=sys.stderr, flush=True)


def _with_progress_bar(run: TrainRun) -> TrainReport:
    columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn()]  # fmt: skip
    with Progress(*columns, console=stderr) as bar:
        task = bar.add_task("train", total=None, info="")

        def show(event: dict[str, Any]) -> None:
            if event["event"] in ("start", "resume"):
                bar.update(task, total=event["steps"], completed=event["step"])
            if event["event"] == "train":
                bar.update(task, completed=event["step"], info=f"loss {event['loss']:.4f}")
            line = _describe(event)
            if line:
                bar.console.print(line, highlight=False)

        run.on_event = show
        return train(run)
