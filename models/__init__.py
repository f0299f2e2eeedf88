"""The Titans model (SPEC 2–4): neural long-term memory, the MAC/MAG/MAL/LMM blocks, streaming state."""

from titans_cli.models.config import TitansConfig
from titans_cli.models.neural_memory import NeuralMemory
from titans_cli.models.state import TitansState
from titans_cli.models.titans import StreamOutput, TitansModel
from titans_cli.models.tokenizer import Tokenizer, byte_tokenizer, dna_tokenizer, tokenizer_for

__all__ = [
    "NeuralMemory",
    "StreamOutput",
    "TitansConfig",
    "TitansModel",
    "TitansState",
    "Tokenizer",
    "byte_tokenizer",
    "dna_tokenizer",
    "tokenizer_for",
]
