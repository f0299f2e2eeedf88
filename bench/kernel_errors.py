"""Errors of the Triton kernels against the torch form on a GPU, each configuration in its own process.

    python bench/kernel_errors.py [--jobs 16] [--warps N] [CASE ...]      CASE: width,depth,chunk

One JSON line per (configuration, activation dtype): the largest relative errors of y, surprise, the end
state and the fixed-weight read, against the float64 torch form on the float32 inputs, so half-precision
rows include the rounding of q/k/v themselves; or the error the kernel raised. The inputs are those of
tests/test_kernel_triton.py. Unlike that pytest module, a kernel that faults (an illegal memory access
poisons the whole CUDA context) takes down only its own configuration. By default every configuration
`triton_supported` accepts; `--warps` forces the warp count, to try a workaround before changing the code.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
DTYPES = ("float32", "float16", "bfloat16")


def measure(width: int, depth: int, chunk: int, dtype_name: str, warps: int | None) -> dict:
    """Runs in the child process."""
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # the CPU interpreter, for trying the script without a GPU
    sys.path.insert(0, str(TESTS))
    import test_kernel_triton as t

    if warps:
        t.mt._num_warps = lambda *_: warps
    dtype = getattr(torch, dtype_name)
    result: dict = {"case": [width, depth, chunk, dtype_name], "warps": warps}
    args = t.random_inputs(depth, 3 * chunk + chunk // 2 + 1, width, seed=width + depth + chunk, heads=3)
    cast = [x.to(dtype) for x in args[:3]] + args[3:]
    try:
        got = t.mt.memory_recurrence_triton(*cast, chunk_size=chunk)
        read = t.mt.mlp_read_triton(args[6], cast[0])
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a faulting kernel reports here, not at a later, unrelated call
    except Exception as error:  # reported, not raised: the point is to see every configuration
        result["error"] = f"{type(error).__name__}: {str(error)[-300:]}"
        return result
    want = t.memory_recurrence_chunked(*t.float64(args), chunk_size=chunk)
    result["y"] = t.relative_error(got.y, want.y)
    result["surprise"] = t.relative_error(got.surprise, want.surprise)
    pairs = zip(got.weights + got.momentum, want.weights + want.momentum)
    result["state"] = max(t.relative_error(a, b) for a, b in pairs)
    result["read"] = t.relative_error(read, t.mlp_forward([w.double() for w in args[6]], args[0].double()))
    return result


def run_child(case: tuple, warps: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", ",".join(map(str, case))] + (["--warps", str(warps)] if warps else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CUDA_LAUNCH_BLOCKING": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"case": list(case), "crash": done.stderr[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help="width,depth,chunk (default: every supported one)")
    parser.add_argument("--jobs", type=int, default=16, help="configurations compiled and run at once")
    parser.add_argument("--warps", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, depth, chunk, dtype = args.child.split(",")
        print(json.dumps(measure(int(width), int(depth), int(chunk), dtype, args.warps)))
        return
    if args.cases:
        shapes = [tuple(int(n) for n in case.split(",")) for case in args.cases]
    else:
        sys.path.insert(0, str(TESTS))
        import test_kernel_triton as t

        shapes = t.GPU_CASES
    cases = [(*shape, dtype) for shape in shapes for dtype in DTYPES]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda case: run_child(case, args.warps), cases):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
