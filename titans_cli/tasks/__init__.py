"""Seeded generators of training and evaluation data (long-context retrieval, stories, genomes).

Every generator is a pure function of its arguments: the seed drives a private ``random.Random`` or
``numpy.random.default_rng`` and never the global RNG, and nothing is downloaded.

* ``haystack``: ``Haystack(split)`` background text from the docs and docstrings that ship with CPython
  plus template prose, split by source into disjoint ``train`` / ``eval`` sets; ``text(n_chars, rng)``.
* ``niah``: ``make_niah(length_chars, seed, variant, needle, depth, split)``, RULER-style needle retrieval
  (single, multi-key, multi-value; number, word or UUID needles) at exact document lengths.
* ``kv_recall``: ``make_kv(n_pairs, seed, n_queries, ...)``, MQAR-style key-value recall, optionally
  spread over background text.
* ``babi``: ``make_babi(task, seed, n_sentences, length_chars, split)``, bAbI-style stories from a world
  simulator (tasks 1, 2, 3 supporting facts and 8 who-has-what), answers read off the simulated world.
* ``genome``: ``make_genome(length, seed)`` / ``iter_genome(...)``, synthetic DNA with isochores, genes,
  tandem, interspersed and inverted repeats, segmental duplications, and exact annotations.

Text tasks return a ``QAExample`` (document, question, answer, task, meta); rendering it as model input is
the model's prompt template's job.
"""

from titans_cli.tasks.babi import make_babi
from titans_cli.tasks.example import QAExample
from titans_cli.tasks.genome import (
    Feature,
    GenomeChunk,
    GenomeConfig,
    SyntheticGenome,
    iter_genome,
    make_genome,
    reverse_complement,
)
from titans_cli.tasks.haystack import Haystack, insert_at_sentence_boundaries
from titans_cli.tasks.kv_recall import make_kv
from titans_cli.tasks.niah import make_niah

__all__ = [
    "Feature",
    "GenomeChunk",
    "GenomeConfig",
    "Haystack",
    "QAExample",
    "SyntheticGenome",
    "insert_at_sentence_boundaries",
    "iter_genome",
    "make_babi",
    "make_genome",
    "make_kv",
    "make_niah",
    "reverse_complement",
]
