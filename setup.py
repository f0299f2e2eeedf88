"""The one thing pyproject.toml cannot declare: the CPU path's C extension, the fused recurrence's chunk steps
(kernels/memory_cpu_native.c) and the memory's conv (kernels/causal_conv_native.c).

Optional: where no C compiler is found the install still succeeds and both run in torch.
Built on x86-64 only, for AVX2 and FMA rather than for the building machine (-march=native), so a wheel
runs on any CPU that has them; kernels/native.py imports it only there. Built for plain SSE2 the chunk
steps ran 4-6x slower, slower than the torch steps (BENCHMARKS.md), and other architectures are
unmeasured, so everywhere else the torch forms run.
"""

import platform

from setuptools import Extension, setup

# gnu11, not c11: ISO C mode forbids contracting a·b + c into a fused multiply-add.
NATIVE = Extension(
    "titans_cli.kernels._native",
    ["kernels/memory_cpu_native.c", "kernels/causal_conv_native.c"],
    depends=["kernels/vec8.h"],
    extra_compile_args=["-O3", "-std=gnu11", "-mavx2", "-mfma"],
    optional=True,
)

setup(ext_modules=[NATIVE] if platform.machine().lower() in ("x86_64", "amd64") else [])
