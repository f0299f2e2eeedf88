"""The one thing pyproject.toml cannot declare: the fused CPU path's C chunk steps (kernels/memory_cpu_native.c).

Optional: where no C compiler is found the install still succeeds and memory_cpu.py steps in torch.
-march=native because the extension is built on the machine that runs it (pip install from source).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "titans_cli.kernels._memory_cpu_native",
            ["kernels/memory_cpu_native.c"],
            # gnu11, not c11: ISO C mode forbids contracting a·b + c into a fused multiply-add.
            extra_compile_args=["-O3", "-march=native", "-std=gnu11"],
            optional=True,
        )
    ]
)
