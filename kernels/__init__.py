"""Implementations of the memory recurrence: a token-loop reference, the chunked torch form, kernels.

Each fast form sits beside the reference it is tested against. `memory_recurrence` picks the one to
use for a call.
"""

from titans_cli.kernels.memory_chunked import memory_recurrence_chunked
from titans_cli.kernels.memory_mlp import mlp_forward
from titans_cli.kernels.memory_reference import memory_recurrence_reference
from titans_cli.kernels.recurrence import RecurrenceResult

memory_recurrence = memory_recurrence_chunked

__all__ = [
    "RecurrenceResult",
    "memory_recurrence",
    "memory_recurrence_chunked",
    "memory_recurrence_reference",
    "mlp_forward",
]
