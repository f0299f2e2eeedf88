#!/usr/bin/env python3
"""Benchmark peer: titans-pytorch (PyPI, 0.5.5) measured on CPU (or CUDA: --device cuda).

Run with the peer venv's interpreter (see bench/peer_env.sh), never ours:

    bench/.peer-venv/bin/python bench/peer_titans_pytorch.py --mode model

This script deliberately does not import our package. It prints exactly one
JSON line on stdout (diagnostics go to stderr).

Modes
  model   MemoryAsContextTransformer forward (eval, no_grad) over --tokens random
          byte tokens, --batch streams, one call.
  memory  one NeuralMemory layer alone over random input [--batch, --tokens, --dim].
  stream  stream --tokens tokens in --piece-sized calls carrying state.
          --stream-impl memory (default): NeuralMemory layer, carrying the
            NeuralMemState returned by forward(seq, state=...).
          --stream-impl mac-cached: the full MAC model; titans-pytorch can only
            carry its cache one token per call (forward(..., cache=...) asserts a
            single token), so this ingests a --piece-token prompt in one call
            and then feeds the remaining tokens one at a time with the cache.
          --check-split additionally runs the whole stream in one call and
          reports the max abs difference of the outputs (split invariance).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from importlib.metadata import version


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["model", "memory", "stream"], required=True)
    p.add_argument("--tokens", type=int, default=None,
                   help="tokens per timed run (default 8192; stream: total stream length, default 32768)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (same shape as a timed run)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; tokens/s is the median")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (model and memory modes)")
    p.add_argument("--batch", type=int, default=1, help="streams per call (model and memory modes)")
    p.add_argument("--seed", type=int, default=0)
    # model dims (defaults = the agreed peer config)
    p.add_argument("--num-tokens", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--segment-len", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=64)
    p.add_argument("--num-persist-mem-tokens", type=int, default=4)
    p.add_argument("--num-longterm-mem-tokens", type=int, default=0)
    p.add_argument("--neural-memory-segment-len", type=int, default=64)
    p.add_argument("--num-residual-streams", type=int, default=1)
    p.add_argument("--mem-heads", type=int, default=4, help="neural_memory_kwargs heads / NeuralMemory heads")
    # titans-pytorch's own defaults are heads as wide as the model (dim_head = dim) and an MLP memory of
    # expansion 4; these match ours (benchmark config: width-64 heads, depth 2, expansion 2)
    p.add_argument("--mem-dim-head", type=int, default=64, help="NeuralMemory dim_head")
    p.add_argument("--mem-depth", type=int, default=2, help="MemoryMLP depth")
    p.add_argument("--mem-expansion", type=float, default=2.0, help="MemoryMLP expansion_factor")
    p.add_argument("--chunk-size", type=int, default=64, help="NeuralMemory chunk_size (memory/stream modes)")
    p.add_argument("--mem-batch-size", type=int, default=None,
                   help="NeuralMemory batch_size / MAC neural_memory_batch_size (default None = library default: "
                        "gradients at the initial memory weights for the whole call)")
    # streaming
    p.add_argument("--stream-impl", choices=["memory", "mac-cached"], default="memory")
    p.add_argument("--piece", type=int, default=8192, help="tokens per streaming call (mac-cached: prompt length)")
    p.add_argument("--check-split", action="store_true", help="stream mode: compare against one unsplit call")
    a = p.parse_args(argv)
    if a.mode == "stream" and (a.device != "cpu" or a.batch != 1):
        p.error("--device and --batch apply to the model and memory modes only")
    if a.tokens is None:
        a.tokens = 32768 if a.mode == "stream" else 8192
    return a


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build_mac(a):
    from titans_pytorch import MemoryAsContextTransformer

    return MemoryAsContextTransformer(
        num_tokens=a.num_tokens,
        dim=a.dim,
        depth=a.depth,
        segment_len=a.segment_len,
        heads=a.heads,
        dim_head=a.dim_head,
        num_persist_mem_tokens=a.num_persist_mem_tokens,
        num_longterm_mem_tokens=a.num_longterm_mem_tokens,
        neural_memory_segment_len=a.neural_memory_segment_len,
        num_residual_streams=a.num_residual_streams,
        neural_memory_batch_size=a.mem_batch_size,
        neural_memory_kwargs=memory_kwargs(a),
    ).eval()


def memory_kwargs(a):
    model = dict(depth=a.mem_depth, expansion_factor=a.mem_expansion)
    return dict(heads=a.mem_heads, dim_head=a.mem_dim_head, default_model_kwargs=model)


def build_mem(a):
    from titans_pytorch import NeuralMemory

    return NeuralMemory(dim=a.dim, chunk_size=a.chunk_size, batch_size=a.mem_batch_size, **memory_kwargs(a)).eval()


def timed(fn, warmup, repeats, sync=lambda: None):
    """Returns (last result, warm-up seconds list, timed seconds list); `sync` waits for the device."""
    warm, times, out = [], [], None
    for _ in range(warmup):
        t0 = time.perf_counter()
        out = fn()
        sync()
        warm.append(time.perf_counter() - t0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return out, warm, times


def main(argv=None):
    a = parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    config = {k: v for k, v in vars(a).items()}
    load_start = os.getloadavg()
    extra = {}

    t_build = time.perf_counter()
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    if a.mode == "model":
        net = build_mac(a).to(device)
        x = torch.randint(0, a.num_tokens, (a.batch, a.tokens), device=device)
        build_s = time.perf_counter() - t_build

        def run():
            with torch.no_grad():
                return net(x)

        out, warm, times = timed(run, a.warmup, a.repeats, sync)
        extra["output_shape"] = list(out.shape)
        extra["output_finite"] = bool(torch.isfinite(out).all())
        tokens_per_run = a.tokens * a.batch

    elif a.mode == "memory":
        net = build_mem(a).to(device)
        x = torch.randn(a.batch, a.tokens, a.dim, device=device)
        build_s = time.perf_counter() - t_build

        def run():
            with torch.no_grad():
                return net(x)

        (out, _state), warm, times = timed(run, a.warmup, a.repeats, sync)
        extra["output_shape"] = list(out.shape)
        extra["output_finite"] = bool(torch.isfinite(out).all())
        tokens_per_run = a.tokens * a.batch

    else:  # stream
        pieces = [a.piece] * (a.tokens // a.piece)
        if a.tokens % a.piece:
            pieces.append(a.tokens % a.piece)

        if a.stream_impl == "memory":
            if a.piece % a.chunk_size and a.piece != 1:
                log(f"warning: piece {a.piece} is not a multiple of chunk_size {a.chunk_size}; titans-pytorch "
                    "0.5.5 then raises a shape error or is not split invariant (see bench/PEER_NOTES.md)")
            net = build_mem(a)
            x = torch.randn(1, a.tokens, a.dim)
            build_s = time.perf_counter() - t_build

            def run():
                outs, state = [], None
                with torch.no_grad():
                    for piece in x.split(a.piece, dim=1):
                        o, state = net(piece, state=state)
                        outs.append(o)
                return torch.cat(outs, dim=1), state

            (out, state), warm, times = timed(run, a.warmup, a.repeats)
            extra["final_state_seq_index"] = int(state.seq_index)
            cached = state.cache_store_segment
            extra["final_state_cached_tokens"] = 0 if cached is None else int(cached.shape[-2])
            if a.check_split:
                with torch.no_grad():
                    full, _ = net(x)
                extra["split_max_abs_diff"] = float((full - out).abs().max())
                extra["split_max_abs_ref"] = float(full.abs().max())
        else:  # mac-cached
            net = build_mac(a)
            x = torch.randint(0, a.num_tokens, (1, a.tokens))
            prompt_len = min(a.piece, a.tokens)
            build_s = time.perf_counter() - t_build

            def run():
                # mirrors MemoryAsContextTransformer.sample(use_cache=True)
                with torch.no_grad():
                    seq_len_with_mem = net.seq_len_with_longterm_mem(a.tokens)
                    axial_dims = net.axial_pos_emb.maybe_derive_outer_dim(
                        seq_len_with_mem, (net.neural_memory_segment_len,))
                    fpe = net.axial_pos_emb(axial_dims, return_factorized=True)
                    t0 = time.perf_counter()
                    logits, cache = net(x[:, :prompt_len], disable_flex_attn=True, cache=None,
                                        return_cache=True, factorized_pos_emb=fpe)
                    t_prompt = time.perf_counter() - t0
                    outs = [logits]
                    for i in range(prompt_len, a.tokens):
                        logits, cache = net(x[:, :i + 1], disable_flex_attn=True, cache=cache,
                                            return_cache=True, factorized_pos_emb=fpe)
                        if logits is not None:  # None on longterm-mem slots
                            outs.append(logits[:, -1:])
                    t_tokens = time.perf_counter() - t0 - t_prompt
                return torch.cat(outs, dim=1), (t_prompt, t_tokens)

            (out, split_t), warm, times = timed(run, a.warmup, a.repeats)
            extra["last_run_prompt_s"] = split_t[0]
            extra["last_run_token_by_token_s"] = split_t[1]
            extra["token_by_token_tokens"] = a.tokens - prompt_len
            if a.tokens > prompt_len and split_t[1] > 0:
                extra["token_by_token_tokens_per_s"] = (a.tokens - prompt_len) / split_t[1]
            if a.check_split:
                with torch.no_grad():
                    full = net(x, disable_flex_attn=True)
                extra["split_max_abs_diff"] = float((full - out).abs().max())
                extra["split_max_abs_ref"] = float(full.abs().max())
            pieces = [prompt_len] + [1] * (a.tokens - prompt_len)
        extra["num_calls"] = len(pieces)
        extra["pieces"] = pieces if len(pieces) <= 16 else f"{pieces[0]} + {len(pieces) - 1} x {pieces[1]}"
        extra["output_finite"] = bool(torch.isfinite(out).all())
        tokens_per_run = a.tokens

    med = statistics.median(times) if times else float("nan")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "peer": "titans-pytorch",
        "mode": a.mode,
        "tokens_per_s": tokens_per_run / med if times else None,
        "median_s": med,
        "times_s": times,
        "warmup_s": warm,
        "build_s": build_s,
        "tokens_per_run": tokens_per_run,
        "params": sum(p.numel() for p in net.parameters()),
        "config": config,
        "versions": {
            "titans_pytorch": version("titans-pytorch"),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": ru.ru_maxrss / 1024,
        "process_cpu_s": {"user": ru.ru_utime, "sys": ru.ru_stime},
        "loadavg_1m": {"start": load_start[0], "end": os.getloadavg()[0]},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        **extra,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
