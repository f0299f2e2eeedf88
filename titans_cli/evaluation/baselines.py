"""Reference compressors for DNA bits per base: gzip, xz, and adaptive order-k Markov models.

They are measured in the same run as the model, on the same genome, so a model's bits per base can be
read against what generic and count-based compression achieve.
"""

from __future__ import annotations

import gzip
import lzma

import numpy as np

MARKOV_ORDERS = (2, 4, 8, 12)
_CODES = np.full(256, 255, dtype=np.uint8)
_CODES[list(b"ACGT")] = np.arange(4, dtype=np.uint8)


def compressed_bits_per_base(sequence: bytes) -> dict[str, float]:
    """gzip and xz at maximum compression: compressed bits / bases."""
    n = max(1, len(sequence))
    return {
        "gzip": 8 * len(gzip.compress(sequence, compresslevel=9)) / n,
        "xz": 8 * len(lzma.compress(sequence, preset=9 | lzma.PRESET_EXTREME)) / n,
    }


def base_codes(sequence: bytes) -> np.ndarray:
    """A C G T → 0 1 2 3 (upper case only; anything else is an error, as N is never scored)."""
    codes = _CODES[np.frombuffer(sequence, dtype=np.uint8)]
    if codes.size and codes.max() > 3:
        raise ValueError("Markov baselines take upper-case ACGT only")
    return codes


def _earlier_occurrences(keys: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same key."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = np.arange(len(keys)) - group_start
    return out


def markov_bits(codes: np.ndarray, k: int, alpha: float = 0.5) -> np.ndarray:
    """Bits for each base under an adaptive order-k model, additively smoothed (alpha=0.5: Krichevsky–Trofimov).

    Sequential: base t is coded with P(b | context) = (n(context, b) + alpha) / (n(context) + 4·alpha), the
    counts taken over positions before t only. The first k bases use the shorter context they have.
    """
    codes = codes.astype(np.int64)
    if not len(codes):
        return np.zeros(0)
    context = np.zeros(len(codes), dtype=np.int64)
    for j in range(1, k + 1):
        previous = np.full(len(codes), 4, dtype=np.int64)  # 4 = before the sequence start
        previous[j:] = codes[:-j]
        context = context * 5 + previous
    n_context = _earlier_occurrences(context)
    n_symbol = _earlier_occurrences(context * 4 + codes)
    return -np.log2((n_symbol + alpha) / (n_context + 4 * alpha))
