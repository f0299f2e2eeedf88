"""The one thing pyproject.toml cannot declare: the fused CPU path's C chunk steps (kernels/memory_cpu_native.c).

Optional: where no C compiler is found the install still succeeds and memory_cpu.py steps in torch.
On x86-64 it is built for AVX2 and FMA, not for the building machine (-march=native), so a wheel runs on
any CPU that has them; memory_cpu.py imports it only there. Built for plain SSE2 the same source ran
4-6x slower than that, slower than the torch steps (BENCHMARKS.md), so other x86-64 CPUs step in torch.
Elsewhere (aarch64: NEON) it is built for the architecture's baseline.
"""

import platform

from setuptools import Extension, setup

X86_64 = platform.machine().lower() in ("x86_64", "amd64")
# gnu11, not c11: ISO C mode forbids contracting a·b + c into a fused multiply-add.
FLAGS = ["-O3", "-std=gnu11", *(["-mavx2", "-mfma"] if X86_64 else [])]

NATIVE = Extension(
    "titans_cli.kernels._memory_cpu_native", ["kernels/memory_cpu_native.c"], extra_compile_args=FLAGS, optional=True
)

setup(ext_modules=[NATIVE])
