"""The training loop: TBPTT through the memory state, gradient accumulation, DDP, checkpoints, evaluation.

`train(TrainRun(...))` runs on one process or on every rank of a `torchrun` launch. The run directory holds
`train_config.json`, `log.jsonl`, `checkpoints/` and, whenever the run stops, the model in `model/`
(`save_pretrained`, loadable with `resolve_model`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from titans_cli.errors import UserError
from titans_cli.model_registry import ModelRef, resolve_model
from titans_cli.models import TitansModel, TitansState
from titans_cli.models.config import CONTEXT_FIELDS
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.training import distributed
from titans_cli.training.checkpoint import (
    TrainerState,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from titans_cli.training.config import TrainConfig
from titans_cli.training.data import Batch, BatchMaker
from titans_cli.training.optimizer import build_optimizer, lr_at, set_lr
from titans_cli.training.runlog import RunLog
from titans_cli.training.validation import validate

CONFIG_FILE = "train_config.json"
MAX_SKIPPED_STEPS = 10


@dataclass
class TrainRun:
    out: Path
    config: TrainConfig | None = None  # None: continue the run directory's own config (with resume)
    resume: bool = False
    max_steps: int | None = None  # stop this session once the run reaches this step
    max_minutes: float | None = None  # stop this session after this much wall time
    device: str = "auto"
    command: str = ""  # recorded in the model card
    should_stop: Callable[[], bool] = lambda: False  # polled after every step (Ctrl-C)
    on_event: Callable[[dict[str, Any]], None] = lambda event: None


@dataclass
class TrainReport:
    out: Path
    model_dir: Path
    step: int
    steps: int  # of the schedule
    tokens: int
    seconds: float  # this session
    loss: float | None  # last logged training loss
    interrupted: bool  # stopped on request rather than by a bound or the schedule's end
    last_eval: dict[str, Any] = field(default_factory=dict)


class PieceLoss(nn.Module):
    """One TBPTT piece: weighted cross-entropy, and the state to carry on, detached.

    Wrapping the loss (not the model) in DDP keeps the carried state out of DDP's search for used
    parameters: only the loss's graph counts.
    """

    def __init__(self, model: TitansModel):
        super().__init__()
        self.model = model

    def forward(
        self, tokens: Tensor, targets: Tensor, weights: Tensor, state: TitansState
    ) -> tuple[Tensor, TitansState]:
        logits, state = self.model(tokens, state)
        ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
        return (ce * weights).sum(), state.detach()


def sequence_loss(
    step_fn: nn.Module,
    model: TitansModel,
    batch: Batch,
    tbptt_len: int,
    scale: float,
    sync: bool,
    device: torch.device,
    bf16: bool = False,
) -> float:
    """Forward and backward one batch in TBPTT pieces; gradients (× scale) accumulate in the parameters.

    With DDP, gradients are all-reduced only when `sync` and at the last piece.
    """
    tokens, targets, weights = (t.to(device) for t in (batch.tokens, batch.targets, batch.weights))
    state = model.init_state(tokens.shape[0])
    total = 0.0
    length = tokens.shape[1]
    for start in range(0, length, tbptt_len):
        piece = slice(start, start + tbptt_len)
        last = start + tbptt_len >= length
        hold = contextlib.nullcontext() if (sync and last) or not hasattr(step_fn, "no_sync") else step_fn.no_sync()
        autocast = torch.autocast("cuda", torch.bfloat16) if bf16 else contextlib.nullcontext()
        with hold:
            with autocast:
                loss, state = step_fn(tokens[:, piece], targets[:, piece], weights[:, piece], state)
            (loss * scale).backward()
        total += float(loss.detach())
    return total


def train(run: TrainRun) -> TrainReport:
    world = distributed.join(run.device)
    try:
        return _train(run, world)
    finally:
        distributed.leave(world)


def _train(run: TrainRun, world: distributed.World) -> TrainReport:
    config = _run_config(run, world)
    log = RunLog(run.out / "log.jsonl")

    def emit(event: dict[str, Any]) -> None:
        if world.is_main:
            log.write(event)
            run.on_event(event)

    torch.manual_seed(config.seed)
    model = TitansModel(config.model).to(world.device).train()
    if config.context_rows_log2 and model.context_memory is not None:  # a capacity, not a weight (config.py)
        model.context_memory.rows_log2 = config.context_rows_log2
    optimizer = build_optimizer(model, config.optim)
    checkpoint = latest_checkpoint(run.out)
    state = TrainerState(seed=config.seed, world_size=world.size)
    origin = None  # where a fine-tuning run's weights came from: (resolvable source, content hash)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, world.device)
        state.world_size = world.size
    elif config.init_from:
        source = start_from(model, config.init_from)
        origin = [source.source, source.content_hash]
    step_fn: nn.Module = PieceLoss(model)
    if world.distributed:  # finds unused parameters: the memory's initial weights only enter the first piece
        device_ids = [world.device] if world.device.type == "cuda" else None
        step_fn = DistributedDataParallel(step_fn, device_ids=device_ids, find_unused_parameters=True)
    bf16 = config.optim.bf16 and world.device.type == "cuda"
    batches = BatchMaker(config)
    n_params = sum(p.numel() for p in model.parameters())
    emit({"event": "resume" if checkpoint else "start", "step": state.step, "steps": config.steps,
          "world_size": world.size, "device": str(world.device), "parameters": n_params,
          "checkpoint": str(checkpoint) if checkpoint else None, "init_from": origin})  # fmt: skip

    started, base_seconds = time.monotonic(), state.seconds
    last_loss, last_eval, interrupted, skipped = None, {}, False, 0
    window_loss, window_steps, window_start = 0.0, 0, time.monotonic()
    while state.step < config.steps and (run.max_steps is None or state.step < run.max_steps):
        lr = lr_at(state.step, config.optim, config.steps)
        set_lr(optimizer, lr)
        loss = 0.0
        for micro in range(config.grad_accum):
            batch = batches.train_batch(state.step, micro * world.size + world.rank)
            loss += sequence_loss(step_fn, model, batch, config.tbptt_len, 1 / config.grad_accum,
                                  micro == config.grad_accum - 1, world.device, bf16) / config.grad_accum  # fmt: skip
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip))
        if math.isfinite(grad_norm):
            optimizer.step()
            skipped = 0
        else:  # one overflowing batch must not turn every weight into NaN (the norm is the same on all ranks)
            skipped += 1
            emit({"event": "skip", "step": state.step + 1, "reason": "non-finite gradient"})
            if skipped >= MAX_SKIPPED_STEPS:
                raise RuntimeError(f"training diverged: {skipped} steps in a row with non-finite gradients; lower "
                                   "optim.lr or model.theta_max and resume from the last checkpoint")  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        step_tokens = batch.tokens.numel() * config.grad_accum * world.size
        state.step += 1
        state.tokens += step_tokens
        window_loss += loss
        window_steps += 1

        over_time = run.max_minutes is not None and time.monotonic() - started >= 60 * run.max_minutes
        wants_stop = run.should_stop()
        stopping = distributed.any_rank(world, over_time or wants_stop)
        if state.step % config.log_every == 0 or state.step == config.steps or stopping:
            (mean_loss,) = distributed.mean(world, [window_loss / window_steps])
            elapsed = time.monotonic() - window_start
            last_loss = mean_loss
            emit({"event": "train", "step": state.step, "loss": mean_loss, "lr": lr, "grad_norm": grad_norm,
                  "tokens": state.tokens, "seq_len": batch.tokens.shape[1],
                  "tokens_per_s": window_steps * step_tokens / max(elapsed, 1e-9)})  # fmt: skip
            window_loss, window_steps, window_start = 0.0, 0, time.monotonic()
        if stopping:
            interrupted = wants_stop
            break
        if config.eval_every and state.step % config.eval_every == 0 and world.is_main:
            last_eval = validate(model, batches, config.eval_batches, config.tbptt_len)
            emit({"event": "eval", "step": state.step, **last_eval})
        if state.step % config.checkpoint_every == 0:
            state.seconds = base_seconds + time.monotonic() - started
            _save(run.out, model, optimizer, state, config, world, emit)

    seconds = time.monotonic() - started
    state.seconds = base_seconds + seconds
    _save(run.out, model, optimizer, state, config, world, emit)
    model_dir = run.out / "model"
    if world.is_main:
        export_model(model, model_dir, _model_card(config, state, last_eval, run.command), config)
    emit({"event": "end", "step": state.step, "tokens": state.tokens, "seconds": seconds, "interrupted": interrupted})
    distributed.barrier(world)
    return TrainReport(run.out, model_dir, state.step, config.steps, state.tokens, seconds, last_loss, interrupted,
                       last_eval)  # fmt: skip


def start_from(model: TitansModel, spec: str) -> ModelRef:
    """Copy the weights of model `spec` (`init_from`) into `model`, whose config must match it, names aside;
    a model with separate W_Q may also start a `tied_query` one (`NeuralMemory.tie_query`), and a model
    without a context memory one that adds it (the context memory starts from its own initialisation)."""
    source = resolve_model(spec)
    tying = model.config.tied_query and not source.config.tied_query
    adding_context = model.config.context_span and not source.config.context_span
    context = {f: getattr(model.config, f) for f in CONTEXT_FIELDS} if adding_context else {}
    same = (replace(source.config, name="", tied_query=False, **context)
            == replace(model.config, name="", tied_query=False))  # fmt: skip
    if not same or (source.config.tied_query and not model.config.tied_query):
        raise UserError(f"init_from {spec!r}: that model's config differs from this run's model; fine-tuning "
                        "needs the same architecture, or tied_query or a context memory added (compare its "
                        "config.json with the run's model section)")  # fmt: skip
    weights = source.load(next(model.parameters()).device).state_dict()
    if tying:
        for name in [n for n in weights if n.endswith("memory.qkv.weight")]:
            conv = name.replace("qkv", "conv")
            weights[name], weights[conv] = NeuralMemory.tie_query(weights[name], weights[conv])
    if adding_context:
        weights.update({f"context_memory.{k}": v for k, v in model.context_memory.state_dict().items()})
    model.load_state_dict(weights)
    return source


def _run_config(run: TrainRun, world: distributed.World) -> TrainConfig:
    """The run's config: a new run records it; a resumed one must match what it recorded."""
    path = run.out / CONFIG_FILE
    existing = path.exists()
    distributed.barrier(world)  # every rank has looked before the main rank writes
    if existing:
        if not run.resume:
            raise UserError(f"{run.out} already holds a training run: continue it with --resume, or pick another --out")
        saved = TrainConfig.from_json(path.read_text())
        if run.config is not None and run.config != saved:
            raise UserError(f"{run.out}: this config differs from the run's own ({path}); resume without "
                            "--preset/--config, or pick another --out")  # fmt: skip
        if world.is_main:
            remove_stale_temporaries(run.out)
        return saved
    if run.config is None:
        raise UserError(f"{run.out}: no training run to resume there; give --preset or --config to start one")
    if world.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{CONFIG_FILE}.tmp")
        tmp.write_text(run.config.to_json() + "\n")
        os.replace(tmp, path)
    distributed.barrier(world)
    return run.config


def _save(out: Path, model: TitansModel, optimizer: torch.optim.Optimizer, state: TrainerState, config: TrainConfig,
          world: distributed.World, emit: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    if world.is_main and not checkpoint_path(out, state.step).exists():  # a stop right after a checkpoint
        path = save_checkpoint(out, model, optimizer, state, config.keep_checkpoints)
        emit({"event": "checkpoint", "step": state.step, "path": str(path)})
    distributed.barrier(world)


def export_model(model: TitansModel, directory: Path, card: str, config: TrainConfig) -> None:
    """save_pretrained plus the card and the training config, into a temporary directory swapped in for `directory`."""
    for prefix in (".tmp", ".old"):  # left by a process killed mid-export
        for stale in directory.parent.glob(f"{prefix}-{directory.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
    old = directory.with_name(f".old-{directory.name}-{os.getpid()}")
    model.save_pretrained(tmp)
    (tmp / "MODEL_CARD.md").write_text(card)
    (tmp / CONFIG_FILE).write_text(config.to_json() + "\n")
    if directory.exists():
        os.rename(directory, old)
    os.rename(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _model_card(config: TrainConfig, state: TrainerState, last_eval: dict[str, Any], command: str) -> str:
    m, d = config.model, config.data
    n_params = sum(p.numel() for p in TitansModel(m).parameters())
    lines = [
        f"# {m.name or 'titans model'}",
        "",
        f"A {m.variant.upper()} Titans model ({m.tokenizer} tokens): d_model {m.d_model}, {m.n_layers} layers, "
        f"{m.n_heads} heads, memory depth {m.memory_depth}, chunk {m.chunk_size}, segment {m.segment_len}"
        + (f", memory input: {m.mac_memory_input}" if m.variant == "mac" else "")
        + f", memory gate: {m.memory_gate}, memory init: {m.memory_init}; {n_params:,} parameters.",
        "",
        "## Training",
        "",
        f"- steps: {state.step:,} of a {config.steps:,}-step schedule; tokens seen: {state.tokens:,}; "
        f"training time: {state.seconds / 3600:.2f} h",
        f"- data: {d.kind}" + (f", mixture {json.dumps(d.mixture)}" if d.kind == "text" else
                                f", {d.n_genomes} synthetic genomes of {d.genome_length:,} bases")
        + f"; sequence lengths {d.curriculum} (from step, tokens); TBPTT pieces of {config.tbptt_len}",
        f"- batch: {config.batch_size} × {config.grad_accum} accumulation × {state.world_size} rank(s); "
        f"AdamW lr {config.optim.lr}, warm-up {config.optim.warmup_steps}, cosine"
        + (f"; started from the weights of {config.init_from} (fine-tuned)" if config.init_from else ""),
        f"- reproduce: `titans train --config {CONFIG_FILE} --out RUN` with the {CONFIG_FILE} beside this card"
        + (f" (this session ran `{command}`)" if command else ""),
    ]
    if last_eval:
        lines += ["", "## Held-out evaluation at the last evaluation step", "", "```", json.dumps(last_eval, indent=2),
                  "```"]  # fmt: skip
    return "\n".join(lines) + "\n"
