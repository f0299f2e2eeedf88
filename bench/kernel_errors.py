"""Errors of the Triton kernels against the torch form on a GPU, each configuration in its own process.

    python bench/kernel_errors.py [--jobs 16] [--timeout 400] [CASE ...]      CASE: width,depth,chunk

One JSON line per (configuration, activation dtype), as each finishes: `kernel_errors` of
tests/test_kernel_triton.py (the largest relative errors of y, surprise, end state and fixed-weight read,
against the float64 torch form on the kernel's own q/k/v and on the float32 q/k/v before rounding), or
the error the kernel raised. Unlike that pytest module, a kernel that faults (an illegal memory access
poisons the whole CUDA context) or hangs takes down only its own configuration. By default every
configuration `triton_supported` accepts with `verified=False` (expansion 2, no gradient clip): the
chunk sizes that have not yet run on a GPU too. Without a GPU the child processes run the kernels in
Triton's CPU interpreter.
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


def _test_module():
    sys.path.insert(0, str(TESTS))
    import test_kernel_triton

    return test_kernel_triton


def measure(width: int, depth: int, chunk: int, dtype_name: str) -> dict:
    """Runs in the child process."""
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
    tests = _test_module()
    result: dict = {"case": [width, depth, chunk, dtype_name]}
    try:
        result.update(tests.kernel_errors(width, depth, chunk, getattr(torch, dtype_name)))
    except Exception as error:  # reported, not raised: the point is to see every configuration
        result["error"] = f"{type(error).__name__}: {str(error)[-300:]}"
    return result


def run_child(case: tuple, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", ",".join(map(str, case))]
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}  # a fault is reported by the launch that made it
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": list(case), "error": f"no result within {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"case": list(case), "error": done.stderr[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help="width,depth,chunk (default: every supported one)")
    parser.add_argument("--jobs", type=int, default=16, help="configurations compiled and run at once")
    parser.add_argument("--timeout", type=float, default=400, help="seconds per configuration")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, depth, chunk, dtype = args.child.split(",")
        print(json.dumps(measure(int(width), int(depth), int(chunk), dtype)))
        return
    shapes = [tuple(int(n) for n in case.split(",")) for case in args.cases] or _test_module().GPU_CASES
    cases = [(*shape, dtype) for shape in shapes for dtype in DTYPES]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_child, case, args.timeout) for case in cases]
        for future in concurrent.futures.as_completed(futures):
            print(json.dumps(future.result()), flush=True)


if __name__ == "__main__":
    main()
