"""titans: stream huge inputs through a Titans model whose neural memory learns while it reads."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("titans")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
