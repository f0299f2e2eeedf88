"""One seed space split in two: training draws below 2**62, evaluation at or above it.

Every generated example, story and genome gets its seed from here, so no held-out example can ever be
generated for training, whatever the run's own seed.
"""

from __future__ import annotations

import hashlib

EVAL_BIT = 1 << 62


def _derive(keys: tuple[object, ...]) -> int:
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return int.from_bytes(digest[:8], "little") % EVAL_BIT


def train_seed(*keys: object) -> int:
    """A training seed, a pure function of `keys` (ints and strings)."""
    return _derive(keys)


def eval_seed(*keys: object) -> int:
    """A held-out seed, never equal to any `train_seed`."""
    return _derive(keys) | EVAL_BIT
