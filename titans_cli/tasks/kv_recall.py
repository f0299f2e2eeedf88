"""MQAR-style associative recall: many ``key: value`` pairs, then a question about one or several keys.

``make_kv(n_pairs, seed, n_queries=1, key_chars=6, value_chars=6, length_chars=None, split="train")``:

* keys and values are random lower-case alphanumeric strings; every key and every value in an example is
  distinct from every other, so each pair is found by exactly one string;
* without ``length_chars`` the document is the pairs, one ``key: value`` per line;
* with ``length_chars`` the pairs are spread in order over background text (``Haystack(split)``) at
  sentence boundaries, and the document is exactly ``length_chars`` characters; queried keys never occur
  in the background, so the asked key appears in the document once;
* the question asks ``n_queries`` distinct keys in random order; the answer gives their values in the
  question's order, joined with ``", "``.

Deterministic per seed (one ``random.Random(seed)``). ``meta`` records the queried keys, each queried pair's
character offset, and all pairs.
"""

from __future__ import annotations

import itertools
import random
import string

from titans_cli.tasks.example import QAExample
from titans_cli.tasks.haystack import Haystack, Split, insert_at_sentence_boundaries

ALPHABET = string.ascii_lowercase + string.digits


def _token(rng: random.Random, n_chars: int) -> str:
    return "".join(rng.choices(ALPHABET, k=n_chars))


def make_kv(
    n_pairs: int,
    seed: int,
    n_queries: int = 1,
    key_chars: int = 6,
    value_chars: int = 6,
    length_chars: int | None = None,
    split: Split = "train",
) -> QAExample:
    """One key-value recall example (see the module docstring)."""
    if not 1 <= n_queries <= n_pairs:
        raise ValueError(f"need 1 <= n_queries <= n_pairs, got n_queries={n_queries}, n_pairs={n_pairs}")
    if min(key_chars, value_chars) < 4:
        raise ValueError("keys and values need at least 4 characters to be distinct from each other")
    rng = random.Random(seed)
    line_chars = key_chars + 2 + value_chars + 1  # "key: value\n"
    filler = ""
    if length_chars is not None:
        if length_chars < n_pairs * line_chars:
            raise ValueError(f"length_chars={length_chars} cannot hold {n_pairs} pairs of {line_chars} chars")
        filler = Haystack(split).text(length_chars - n_pairs * line_chars, random.Random(rng.getrandbits(64)))

    used: set[str] = set()

    def fresh(n_chars: int, avoid_background: bool) -> str:
        while True:
            token = _token(rng, n_chars)
            if token not in used and not (avoid_background and token in filler):
                used.add(token)
                return token

    asked = rng.sample(range(n_pairs), n_queries)
    asked_set = set(asked)
    # Only the asked pairs need a background check: a scan of a long filler per pair would dominate.
    keys = [fresh(key_chars, i in asked_set) for i in range(n_pairs)]
    values = [fresh(value_chars, i in asked_set) for i in range(n_pairs)]
    lines = [f"{k}: {v}\n" for k, v in zip(keys, values, strict=True)]

    if length_chars is None:
        document = "".join(lines).rstrip("\n")
        offsets = [0, *itertools.accumulate(len(line) for line in lines[:-1])]
    else:
        depths = sorted(rng.random() for _ in range(n_pairs))
        document, offsets = insert_at_sentence_boundaries(filler, list(zip(depths, lines, strict=True)))

    asked_keys = [keys[i] for i in asked]
    if n_queries == 1:
        question = f"What is the value of key {asked_keys[0]}?"
    else:
        question = f"What are the values of keys {', '.join(asked_keys)}? Answer in the same order."
    return QAExample(
        document=document,
        question=question,
        answer=", ".join(values[i] for i in asked),
        task="kv_recall",
        meta={
            "keys": asked_keys,
            "offsets": [offsets[i] for i in asked],
            "pairs": list(zip(keys, values, strict=True)),
            "n_pairs": n_pairs,
            "split": split,
            "seed": seed,
        },
    )
