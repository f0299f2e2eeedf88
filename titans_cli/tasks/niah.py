"""RULER-style single-needle-in-a-haystack (S-NIAH) retrieval, plus its multi-key and multi-value variants.

A needle is the sentence ``The special magic {kind} for {key} is: {value}.`` placed at a sentence boundary
of background text (``Haystack``). Keys are adjective-noun pairs such as ``aquatic-lamp``.

``make_niah(length_chars, seed, variant, needle, depth, split)``:

* ``variant="single"``: one needle; the question asks its value.
* ``variant="multikey"``: ``n_needles`` needles with distinct keys and distinct values; the question asks
  one key, the others are distractors.
* ``variant="multivalue"``: ``n_needles`` needles with the same key; the answer lists every value in the
  order they appear in the document, joined with ``", "``.
* ``needle``: ``"number"`` (7 digits), ``"word"`` (from ``NEEDLE_WORDS``) or ``"uuid"``.
* ``depth``: where the asked needle goes, as a fraction of the document (0 = start, 1 = end); ``None``
  draws it uniformly. Distractors and extra values are placed uniformly (extra values after the first).
* ``split``: which ``Haystack`` split supplies the background.

The document is exactly ``length_chars`` characters. The same arguments give the same example; the seed
drives one ``random.Random`` and nothing else. ``meta`` records keys, values, each needle's character offset
and its actual depth.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from typing import Literal

from titans_cli.tasks.example import QAExample
from titans_cli.tasks.haystack import Haystack, Split, insert_at_sentence_boundaries

Variant = Literal["single", "multikey", "multivalue"]
NeedleKind = Literal["number", "word", "uuid"]
VARIANTS: tuple[Variant, ...] = ("single", "multikey", "multivalue")
NEEDLE_KINDS: tuple[NeedleKind, ...] = ("number", "word", "uuid")

KEY_ADJECTIVES: tuple[str, ...] = (
    "aquatic", "brave", "crooked", "dusty", "elegant", "fancy", "gentle", "hollow", "icy", "jolly", "knotty",
    "lively", "misty", "nimble", "obedient", "polite", "quiet", "rustic", "shiny", "tidy", "upbeat", "vivid",
    "wooden", "yellow", "zealous", "ancient", "bitter", "cosmic", "daring", "eager", "fragile", "golden",
    "humble", "ivory", "jagged", "kind", "lucky", "mellow", "noisy", "orange", "purple", "quick", "rapid",
    "silent", "tender", "urban", "velvet", "windy", "young", "zesty",
)
KEY_NOUNS: tuple[str, ...] = (
    "lamp", "anchor", "badger", "candle", "dolphin", "engine", "falcon", "garden", "harbor", "island",
    "jacket", "kettle", "ladder", "meadow", "needle", "orchard", "pepper", "quarry", "rocket", "saddle",
    "teapot", "umbrella", "violin", "walnut", "yacht", "zipper", "basket", "canyon", "desert", "feather",
    "glacier", "hammer", "igloo", "jungle", "kayak", "lantern", "mirror", "nutmeg", "otter", "pillow",
    "quilt", "ribbon", "spider", "tunnel", "unicorn", "vessel", "whistle", "yogurt", "zebra", "compass",
)
NEEDLE_WORDS: tuple[str, ...] = (
    "abacus", "alchemy", "almanac", "amethyst", "armadillo", "avalanche", "banjo", "barnacle", "bassoon",
    "bellows", "bramble", "buttress", "cactus", "calliope", "carousel", "cassowary", "chandelier", "chisel",
    "cinnamon", "clarinet", "cobbler", "coriander", "cormorant", "crescent", "croquet", "cutlass", "daffodil",
    "dirigible", "dulcimer", "eiderdown", "emerald", "falafel", "fennel", "fiddle", "flamingo", "gazebo",
    "gondola", "granite", "gherkin", "harpoon", "hedgehog", "hibiscus", "hurricane", "iguana", "jasmine",
    "juniper", "kaleidoscope", "kiwi", "labyrinth", "lagoon", "lavender", "limerick", "lozenge", "macaroon",
    "magnolia", "mandolin", "marzipan", "meringue", "monsoon", "mosaic", "narwhal", "nectarine", "nougat",
    "oboe", "octopus", "origami", "paprika", "parsnip", "pelican", "periscope", "pistachio", "platypus",
    "porcupine", "pretzel", "quince", "raccoon", "rhubarb", "saffron", "sardine", "sextant", "sombrero",
    "spinnaker", "tamarind", "tambourine", "toboggan", "trombone", "tulip", "turquoise", "ukulele", "vanilla",
    "walrus", "wigwam", "xylophone", "yodel", "zeppelin", "zucchini",
)

_NEEDLE_TEMPLATE = "The special magic {kind} for {key} is: {value}."
_QUOTED_VALUE = re.compile(r" is: (\S+?)\.(?=\s|$)")  # a needle sentence's value, up to its full stop


def quoted_values(text: str) -> list[str]:
    """The values of the needle sentences quoted in `text` (a quoting model's answer), in order."""
    return _QUOTED_VALUE.findall(text)


def needle_spans(example: QAExample) -> list[tuple[int, int]]:
    """Where each needle sentence of a NIAH example lies in its document, [start, end), in `meta["needles"]`
    order: characters, and bytes too, since documents are ASCII (`QAExample`)."""
    meta = example.meta
    return [(o, o + len(s)) for o, s in zip(meta["offsets"], meta["needles"], strict=True)]


def _value(rng: random.Random, needle: NeedleKind) -> str:
    if needle == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if needle == "word":
        return rng.choice(NEEDLE_WORDS)
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _distinct(rng: random.Random, count: int, draw: Callable[[random.Random], str], avoid: str) -> list[str]:
    """``count`` distinct values from ``draw`` that do not already occur in the background text."""
    values: list[str] = []
    for _ in range(1000 * count):
        value = draw(rng)
        if value not in values and value not in avoid:
            values.append(value)
            if len(values) == count:
                return values
    raise ValueError(f"could not draw {count} distinct needle values absent from the background")


def niah_question(variant: Variant, needle: NeedleKind, key: str) -> str:
    """The question asked of a NIAH document (also how `samples/` phrases its questions)."""
    if variant == "multivalue":
        return (f"What are all the special magic {needle}s for {key} mentioned in the provided text? "
                "List them in the order they appear.")
    return f"What is the special magic {needle} for {key} mentioned in the provided text?"


def make_niah(
    length_chars: int,
    seed: int,
    variant: Variant = "single",
    needle: NeedleKind = "number",
    depth: float | None = None,
    split: Split = "train",
    n_needles: int = 4,
) -> QAExample:
    """One S-NIAH example whose document is exactly ``length_chars`` characters (see the module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if needle not in NEEDLE_KINDS:
        raise ValueError(f"needle must be one of {NEEDLE_KINDS}, got {needle!r}")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    count = 1 if variant == "single" else n_needles
    if count < 1 or (variant == "multivalue" and count > len(NEEDLE_WORDS) // 2):
        raise ValueError(f"n_needles out of range: {n_needles}")
    rng = random.Random(seed)

    keys = [f"{a}-{n}" for a, n in rng.sample([(a, n) for a in KEY_ADJECTIVES for n in KEY_NOUNS], count)]
    if variant == "multivalue":
        keys = [keys[0]] * count
    # Values must not already occur in the background (the answer would be ambiguous), so draw the filler
    # first at full length and trim it once the needle sentences, hence their length, are known.
    filler_rng = random.Random(rng.getrandbits(64))
    provisional = Haystack(split).text(length_chars, filler_rng)
    values = _distinct(rng, count, lambda r: _value(r, needle), provisional)
    sentences = [
        _NEEDLE_TEMPLATE.format(kind=needle, key=k, value=v) + " " for k, v in zip(keys, values, strict=True)
    ]
    if length_chars < sum(len(s) for s in sentences):
        raise ValueError(f"length_chars={length_chars} is too short for {count} needle(s)")
    filler = provisional[: length_chars - sum(len(s) for s in sentences)]

    asked_depth = rng.random() if depth is None else depth
    if variant == "multivalue":
        depths = [asked_depth, *(rng.uniform(asked_depth, 1.0) for _ in range(count - 1))]
    else:
        depths = [asked_depth, *(rng.random() for _ in range(count - 1))]
    document, offsets = insert_at_sentence_boundaries(filler, list(zip(depths, sentences, strict=True)))

    in_order = sorted(range(count), key=lambda i: offsets[i])
    answer = ", ".join(values[i] for i in in_order) if variant == "multivalue" else values[0]
    return QAExample(
        document=document,
        question=niah_question(variant, needle, keys[0]),
        answer=answer,
        task=f"niah_{variant}_{needle}",
        meta={
            "key": keys[0],
            "keys": keys,
            "values": values,
            "needles": [s.rstrip() for s in sentences],
            "offsets": offsets,
            "depths": [o / len(document) for o in offsets],
            "requested_depth": depth,
            "split": split,
            "seed": seed,
        },
    )
