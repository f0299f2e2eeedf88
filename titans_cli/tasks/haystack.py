"""Background text ("haystack") for long-context tasks, built only from text that ships with CPython.

Nothing is downloaded and nothing depends on installed third-party packages. Three kinds of source:

* ``pydoc:<topic>``: the English reference pages bundled in ``pydoc_data.topics``;
* ``module:<name>``: docstrings of a fixed list of pure standard-library modules (the module, its public
  classes and functions, and their public methods), read with ``__doc__`` so nothing is inherited;
* ``prose:<n>``: seeded template sentences about everyday scenes, for variety of register.

Each source is cut into paragraphs, folded to ASCII (so a character is a byte for the byte-level models),
whitespace-normalised, stripped of code samples and deduplicated. A source belongs to exactly one split,
chosen by a hash of its name (about 10% go to ``eval``), so a model evaluated on ``Haystack("eval")`` never
saw those passages as training filler.

The corpus is a pure function of the Python version (the bundled docs change between releases; running
under ``python -OO`` strips the docstrings). ``Haystack.fingerprint`` identifies it for model cards.

``Haystack.text(n_chars, rng)`` returns exactly ``n_chars`` characters of paragraphs in an order drawn from
``rng`` (a ``random.Random`` or an int seed): each pass visits every passage once in a fresh shuffled order,
so long fillers repeat as little as possible. ``insert_at_sentence_boundaries`` places task sentences
(needles, facts, pairs) into filler without cutting a sentence.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib
import inspect
import os
import random
import re
import sysconfig
import textwrap
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
EVAL_PERCENT = 10

# Pure-Python (or always-built) modules present in every CPython >= 3.10 build; no optional C extensions
# (ssl, sqlite3, lzma, curses, tkinter) and nothing deprecated, so the list imports the same everywhere.
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "ast", "base64", "bisect", "calendar", "cmd", "code", "codecs", "codeop",
    "collections", "colorsys", "compileall", "configparser", "contextlib", "contextvars", "copy",
    "copyreg", "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest", "email", "enum",
    "filecmp", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "getpass", "gettext",
    "glob", "graphlib", "hashlib", "heapq", "hmac", "html", "html.parser", "http", "http.client",
    "http.cookiejar", "http.cookies", "http.server", "imaplib", "inspect", "io", "ipaddress", "itertools",
    "json", "keyword", "linecache", "locale", "logging", "logging.handlers", "mailbox", "mimetypes",
    "modulefinder", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle",
    "pickletools", "pkgutil", "platform", "plistlib", "poplib", "pprint", "profile", "pstats",
    "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re", "reprlib", "rlcompleter", "runpy",
    "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "stat", "statistics", "string", "stringprep", "struct", "subprocess", "symtable",
    "sysconfig", "tabnanny", "tempfile", "textwrap", "threading", "timeit", "token", "tokenize", "trace",
    "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request", "urllib.robotparser",
    "uuid", "warnings", "weakref", "webbrowser", "wsgiref", "xml.dom.minidom", "xml.etree.ElementTree",
    "zipapp", "zipfile", "zipimport", "zoneinfo",
)

N_PROSE_SOURCES = 100  # about a fifth of the corpus: variety without drowning the real text
MIN_PASSAGE_CHARS = 40
_FOOTNOTE = re.compile(r"\s*\[\d+\]$")
_BULLET = re.compile(r"^(?:[*-]|\d+\.)\s+")


@dataclass(frozen=True)
class Passage:
    """One paragraph of background text and the source it came from (which fixes its split)."""

    source: str
    text: str


def split_of(source: str) -> Split:
    """The split a source belongs to: a stable hash of its name, never Python's salted ``hash``."""
    digest = hashlib.sha256(source.encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") % 100 < EVAL_PERCENT else "train"


def _to_ascii(text: str) -> str:
    # Decompose accents then drop what is left, so "naïve" reads "naive" rather than vanishing.
    text = unicodedata.normalize("NFKD", text)
    return text.encode("ascii", "ignore").decode("ascii")


def _paragraphs(text: str) -> Iterator[str]:
    """Prose paragraphs of a docstring or doc page; doctests, grammar rules and code blocks are dropped."""
    for block in re.split(r"\n\s*\n", text):
        block = textwrap.dedent(block).strip()
        if ">>>" in block or "::=" in block or "\n    " in block:  # deeper indentation inside a block is code
            continue
        joined = _BULLET.sub("", " ".join(line.strip() for line in block.split("\n")))
        joined = _FOOTNOTE.sub("", re.sub(r"\s+", " ", _to_ascii(joined)).strip())
        letters = sum(ch.isalpha() or ch == " " for ch in joined)
        if len(joined) >= MIN_PASSAGE_CHARS and letters >= 0.85 * len(joined) and joined.endswith("."):
            yield joined


def _pydoc_sources() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc:{name}", topics[name]


def _own_docs(obj: object) -> Iterator[str]:
    doc = getattr(obj, "__doc__", None)
    if isinstance(doc, str):
        yield inspect.cleandoc(doc)


def _module_sources() -> Iterator[tuple[str, str]]:
    for name in STDLIB_MODULES:
        # Importing or inspecting may warn about deprecated members; collect inside the guard, yield outside.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                module = importlib.import_module(name)
            except ImportError:  # a stripped-down build; the fingerprint records the difference
                continue
            if not _in_stdlib(module):  # shadowed by a same-named file on sys.path: not CPython's text
                continue
            text = "\n\n".join(_module_docs(module, name))
        yield f"module:{name}", text


def _in_stdlib(module: object) -> bool:
    path = getattr(module, "__file__", None)
    if path is None:  # built into the interpreter
        return True
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    return os.path.realpath(path).startswith(stdlib + os.sep)


def _module_docs(module: object, name: str) -> Iterator[str]:
    yield from _own_docs(module)
    for attr, obj in sorted(vars(module).items()):
        # Only what the module defines: re-exports would make a module's text depend on its imports.
        if attr.startswith("_") or getattr(obj, "__module__", None) != name:
            continue
        if inspect.isfunction(obj):
            yield from _own_docs(obj)
        elif inspect.isclass(obj):
            yield from _own_docs(obj)
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and inspect.isfunction(member):
                    yield from _own_docs(member)


_PROSE_SUBJECTS = (
    "the old miller", "a young engineer", "the harbour master", "the night nurse", "a travelling painter",
    "the village baker", "the lighthouse keeper", "a retired surveyor", "the schoolteacher", "the ferryman",
    "a quiet librarian", "the shepherd", "the clockmaker", "a tired courier", "the choir director",
    "the beekeeper", "a visiting botanist", "the station guard", "the weaver", "the potter",
)
_PROSE_VERBS = (
    "repaired", "carried", "painted", "measured", "described", "polished", "counted", "wrapped", "inspected",
    "sketched", "mended", "arranged", "collected", "weighed", "folded", "sorted", "tuned", "washed",
)
_PROSE_THINGS = (
    "a wooden chair", "the brass lantern", "an old map", "the broken fence", "a basket of pears",
    "the church bell", "a stack of letters", "the garden gate", "a blue coat", "the copper kettle",
    "a set of keys", "the narrow boat", "a bundle of reeds", "the stone wall", "a jar of honey",
    "the weather vane", "a pair of boots", "the iron stove", "a roll of canvas", "the market stall",
)
_PROSE_PLACES = (
    "by the river", "near the mill", "on the hill", "at the harbour", "behind the chapel", "in the orchard",
    "under the bridge", "beside the road", "at the edge of the forest", "in the square", "on the pier",
    "by the old well", "in the valley", "across the meadow", "at the crossroads",
)
_PROSE_TIMES = (
    "early in the morning", "before the rain", "after supper", "in the late afternoon", "on a cold evening",
    "at first light", "during the storm", "while the bells rang", "as the fog lifted", "that spring",
)
_PROSE_ADJECTIVES = (
    "calm", "patient", "careful", "cheerful", "silent", "curious", "weary", "proud", "gentle",
)
_PROSE_TEMPLATES = (
    "{Subject} {verb} {thing} {place} {time}.",
    "{Time}, {subject} {verb} {thing} {place}.",
    "Nobody knew why {subject} {verb} {thing} {place}.",
    "{Subject} was {adjective} that day and {verb} {thing} {time}.",
    "It was said that {subject} once {verb} {thing} {place}.",
    "{Place}, {subject} {verb} {thing} and then rested.",
    "{Subject} {verb} {thing}, and {other} watched {place}.",
    "Later, {other} asked whether {subject} had {verb} {thing} {time}.",
)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _prose_paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(4, 9)):
        subject, other = rng.sample(_PROSE_SUBJECTS, 2)
        slots = {
            "subject": subject, "other": other, "verb": rng.choice(_PROSE_VERBS),
            "thing": rng.choice(_PROSE_THINGS), "place": rng.choice(_PROSE_PLACES),
            "time": rng.choice(_PROSE_TIMES), "adjective": rng.choice(_PROSE_ADJECTIVES),
        }
        slots.update({key.capitalize(): _capitalise(value) for key, value in list(slots.items())})
        sentences.append(rng.choice(_PROSE_TEMPLATES).format(**slots))
    return " ".join(sentences)


def _prose_sources() -> Iterator[tuple[str, str]]:
    for index in range(N_PROSE_SOURCES):
        name = f"prose:{index:03d}"
        rng = random.Random(name)  # str seeds hash with sha512: stable across runs and PYTHONHASHSEED
        yield name, "\n\n".join(_prose_paragraph(rng) for _ in range(rng.randint(2, 5)))


@functools.lru_cache(maxsize=1)
def load_corpus() -> tuple[Passage, ...]:
    """Every passage of every source, in a fixed order; loaded once per process."""
    passages: list[Passage] = []
    seen: set[str] = set()
    for source, text in (*_pydoc_sources(), *_module_sources(), *_prose_sources()):
        for paragraph in _paragraphs(text):
            # Global dedup: a paragraph shared by two sources cannot land in both splits.
            if paragraph not in seen:
                seen.add(paragraph)
                passages.append(Passage(source, paragraph))
    return tuple(passages)


@functools.lru_cache(maxsize=len(SPLITS))
def _split_passages(split: Split) -> tuple[Passage, ...]:
    return tuple(p for p in load_corpus() if split_of(p.source) == split)


def as_rng(rng: random.Random | int) -> random.Random:
    """Accept a seed where a generator is expected; never falls back to the global RNG."""
    return rng if isinstance(rng, random.Random) else random.Random(rng)


class Haystack:
    """Filler text from one split of the corpus.

    ``Haystack("train")`` and ``Haystack("eval")`` draw from disjoint sources. ``text`` is deterministic in
    its ``rng``; ``stream`` is the same passage order as an endless iterator, for fillers of any size.
    """

    def __init__(self, split: Split = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split: Split = split
        self.passages: tuple[Passage, ...] = _split_passages(split)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(p.source for p in self.passages)

    @property
    def n_chars(self) -> int:
        return sum(len(p.text) for p in self.passages)

    @property
    def fingerprint(self) -> str:
        """sha256 of this split's passages: equal fingerprints mean identical filler for identical seeds."""
        digest = hashlib.sha256()
        for p in self.passages:
            digest.update(f"{p.source}\0{p.text}\0".encode())
        return digest.hexdigest()

    def stream(self, rng: random.Random | int) -> Iterator[str]:
        """Passages forever: each pass is a fresh seeded permutation of the whole split."""
        rng = as_rng(rng)
        order = list(range(len(self.passages)))
        while True:
            rng.shuffle(order)
            for index in order:
                yield self.passages[index].text

    def text(self, n_chars: int, rng: random.Random | int) -> str:
        """Exactly ``n_chars`` characters of paragraphs separated by newlines (the last one may be cut)."""
        if n_chars < 0:
            raise ValueError(f"n_chars must be >= 0, got {n_chars}")
        pieces: list[str] = []
        total = 0
        passages = self.stream(rng)
        while total < n_chars:
            piece = next(passages) + "\n"
            pieces.append(piece)
            total += len(piece)
        return "".join(pieces)[:n_chars]


_SENTENCE_END = re.compile(r"[.!?]\s")


def sentence_boundaries(text: str) -> list[int]:
    """Offsets where a new sentence may start: 0 and just after sentence-ending punctuation plus a space."""
    return [0, *(m.end() for m in _SENTENCE_END.finditer(text))]


def insert_at_sentence_boundaries(
    filler: str, insertions: Sequence[tuple[float, str]]
) -> tuple[str, list[int]]:
    """Insert each ``(depth, text)`` at the sentence boundary of ``filler`` nearest ``depth * len(filler)``.

    Insertions that land on the same boundary keep their input order, so a story inserted with
    non-decreasing depths reads in order. Returns the document (``len(filler) + sum(len(text))``
    characters) and the offset of each insertion in it, in input order.
    """
    bounds = sentence_boundaries(filler)
    chosen = []
    for depth, _ in insertions:
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must be in [0, 1], got {depth}")
        target = depth * len(filler)
        j = bisect.bisect_left(bounds, target)
        candidates = bounds[max(j - 1, 0) : j + 1]
        chosen.append(min(candidates, key=lambda b: (abs(b - target), b)))
    order = sorted(range(len(insertions)), key=lambda i: (chosen[i], i))
    pieces: list[str] = []
    offsets = [0] * len(insertions)
    previous = 0
    length = 0
    for i in order:
        pieces.append(filler[previous : chosen[i]])
        length += chosen[i] - previous
        offsets[i] = length
        pieces.append(insertions[i][1])
        length += len(insertions[i][1])
        previous = chosen[i]
    pieces.append(filler[previous:])
    return "".join(pieces), offsets
