"""The CPU path's C extension (memory_cpu_native.c, causal_conv_native.c): `native`, or None where it cannot run;
and the threads it shares work among (`run_parts`, `side_by_side`).

Built by `pip install` on x86-64 where a C compiler exists (setup.py), for AVX2 and FMA. Where it was not
built, or the CPU lacks AVX2 (its first vector instruction would kill the process), every caller runs its
torch form. Other architectures run in torch too: the C code is unmeasured there, and a 128-bit build for
x86-64 (SSE2) was slower than the torch chunk steps.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch


def native_module():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None
    try:
        from titans_cli.kernels import _native

        return _native
    except ImportError:
        return None


native = native_module()


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def run_parts(work: Callable[[int], None], parts: int) -> None:
    """work(0), …, work(parts − 1) at once, part 0 on this thread and the rest on a process-wide pool (the C
    calls release the GIL, so the parts run on separate cores); returns when all are done, raising the
    first part's error. The pool is made once and grows to the most parts asked for: a new pool per call
    cost more than a small call's work."""
    global _pool, _pool_size
    if parts > 1:
        with _pool_lock:
            if _pool_size < parts - 1:
                _pool, _pool_size = ThreadPoolExecutor(parts - 1, thread_name_prefix="titans-native"), parts - 1
            pool = _pool
        others = [pool.submit(work, part) for part in range(1, parts)]
    else:
        others = []
    try:
        work(0)
    finally:
        for other in others:
            other.result()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count at `count` meanwhile; it is process-wide, so it is restored on the way out."""
    threads = torch.get_num_threads()
    if threads == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def side_by_side(*works: Callable[[], Any]) -> list[Any]:
    """[work() for work in works], run at once on `run_parts`'s threads with an equal share of torch's
    intra-op threads each (one each on 2 cores), so torch computations that each leave cores idle share
    them instead of taking turns. Each runs in the caller's grad mode (torch keeps it per thread)."""
    grad = torch.is_grad_enabled()
    results: list[Any] = [None] * len(works)

    def part(i: int) -> None:
        with torch.set_grad_enabled(grad):
            results[i] = works[i]()

    with torch_threads(max(1, torch.get_num_threads() // len(works))):
        run_parts(part, len(works))
    return results
