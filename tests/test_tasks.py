"""Data generators: determinism per seed, exact lengths, and answers/annotations checked independently."""

from __future__ import annotations

import itertools
import random
import re
import sys
from collections import defaultdict

import numpy as np
import pytest

from titans_cli.tasks import (
    GenomeConfig,
    Haystack,
    insert_at_sentence_boundaries,
    iter_genome,
    make_babi,
    make_genome,
    make_kv,
    make_niah,
    reverse_complement,
)
from titans_cli.tasks.babi import ACTORS
from titans_cli.tasks.genome import STOP_CODONS, mutate
from titans_cli.tasks.haystack import STDLIB_MODULES, load_corpus

# -- haystack ----------------------------------------------------------------------------------------


def test_haystack_splits_are_disjoint_by_source_and_passage():
    train, held_out = Haystack("train"), Haystack("eval")
    assert train.sources and held_out.sources
    assert not train.sources & held_out.sources
    assert not {p.text for p in train.passages} & {p.text for p in held_out.passages}
    for split in (train, held_out):
        assert {s.split(":")[0] for s in split.sources} == {"pydoc", "module", "prose"}
    assert train.n_chars > 5 * held_out.n_chars > 0


def test_haystack_uses_only_text_shipped_with_python():
    from pydoc_data.topics import topics

    allowed_modules = set(sys.stdlib_module_names)
    for passage in load_corpus():
        kind, name = passage.source.split(":", 1)
        if kind == "pydoc":
            assert name in topics
        elif kind == "module":
            assert name in STDLIB_MODULES and name.split(".")[0] in allowed_modules
        assert passage.text.isascii()


def test_haystack_text_is_exact_and_seeded():
    haystack = Haystack("train")
    for n in (0, 1, 997, 150_000):
        assert len(haystack.text(n, random.Random(4))) == n
    assert haystack.text(5_000, 4) == haystack.text(5_000, random.Random(4))
    assert haystack.text(5_000, 4) != haystack.text(5_000, 5)
    assert Haystack("eval").fingerprint == Haystack("eval").fingerprint != haystack.fingerprint


def test_insertions_land_on_sentence_boundaries_in_order():
    filler = "One two. Three four. Five six. Seven."
    document, offsets = insert_at_sentence_boundaries(filler, [(0.5, "X. "), (0.5, "Y. "), (0.0, "Z. ")])
    assert len(document) == len(filler) + 9
    assert [document[o : o + 3] for o in offsets] == ["X. ", "Y. ", "Z. "]
    assert offsets[2] == 0 and offsets[0] < offsets[1]
    assert document[offsets[0] - 2 : offsets[0]] == ". "


# -- needle in a haystack ----------------------------------------------------------------------------

NEEDLE = re.compile(r"The special magic (number|word|uuid) for ([a-z]+-[a-z]+) is: ([0-9a-z-]+)\.")


@pytest.mark.parametrize("variant", ["single", "multikey", "multivalue"])
@pytest.mark.parametrize("needle", ["number", "word", "uuid"])
def test_niah_answer_is_in_its_document(variant, needle):
    example = make_niah(20_000, seed=11, variant=variant, needle=needle)
    assert len(example.document) == 20_000
    assert example == make_niah(20_000, seed=11, variant=variant, needle=needle)
    assert example.document != make_niah(20_000, seed=12, variant=variant, needle=needle).document
    found = [(m.start(), m.group(2), m.group(3)) for m in NEEDLE.finditer(example.document)]
    assert {m.group(1) for m in NEEDLE.finditer(example.document)} == {needle}
    key = example.meta["key"]
    assert key in example.question
    asked = [value for _, k, value in found if k == key]
    if variant == "multivalue":
        assert len(found) == len(asked) == 4
        assert example.answer == ", ".join(asked)  # found is already in document order
    else:
        assert asked == [example.answer]
        assert len(found) == (1 if variant == "single" else 4)
        others = [(k, value) for _, k, value in found if k != key]
        assert all(value != example.answer for _, value in others)
        assert len({k for _, k, _ in found}) == len(found)
    for sentence in example.meta["needles"]:
        assert example.document.count(sentence) == 1
    if needle == "number":
        assert re.fullmatch(r"\d{7}", example.answer.split(", ")[0])


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_niah_depth_is_honoured(depth):
    example = make_niah(30_000, seed=3, depth=depth)
    assert abs(example.meta["depths"][0] - depth) < 0.05
    offset = example.meta["offsets"][0]
    assert offset == 0 or example.document[offset - 1] in " \n"


def test_niah_eval_split_reads_only_held_out_passages():
    held_out = {p.text for p in Haystack("eval").passages}
    train = {p.text for p in Haystack("train").passages}
    lines = make_niah(40_000, seed=1, split="eval").document.split("\n")[1:-1]  # first and last may be cut
    whole = [line for line in lines if "special magic" not in line]
    assert whole and all(line in held_out and line not in train for line in whole)


# -- key-value recall ----------------------------------------------------------------------------------


def test_kv_pairs_only():
    example = make_kv(64, seed=5, n_queries=3)
    assert example == make_kv(64, seed=5, n_queries=3)
    assert example.document != make_kv(64, seed=6, n_queries=3).document
    pairs = dict(line.split(": ") for line in example.document.split("\n"))
    assert len(pairs) == 64 and len(set(pairs.values())) == 64
    for key in example.meta["keys"]:
        assert example.document.count(key) == 1
        assert example.question.count(key) == 1
    assert example.answer == ", ".join(pairs[k] for k in example.meta["keys"])


def test_kv_spread_over_filler():
    example = make_kv(40, seed=2, n_queries=2, length_chars=50_000)
    assert len(example.document) == 50_000
    assert example == make_kv(40, seed=2, n_queries=2, length_chars=50_000)
    answers = []
    for key in example.meta["keys"]:
        assert example.document.count(key) == 1
        answers.append(re.search(re.escape(key) + r": ([a-z0-9]+)\n", example.document).group(1))
    assert example.answer == ", ".join(answers)
    assert sorted(example.meta["offsets"]) == sorted(example.document.index(k) for k in example.meta["keys"])


# -- bAbI ------------------------------------------------------------------------------------------

_ACTOR = "|".join(ACTORS)
_STORY = re.compile(
    rf"\b({_ACTOR}) (went to|moved to|journeyed to|travelled to|went back to|picked up|got|grabbed|took"
    rf"|dropped|discarded|put down|left|gave|handed|passed) the (\w+)(?: to ({_ACTOR}))?\."
)


def _replay(sentences):
    """A separate, deliberately plain simulator: it also asserts every action was legal."""
    at, holder, lying, carrying, visits = {}, {}, {}, defaultdict(list), defaultdict(list)
    for sentence in sentences:
        actor, verb, thing, receiver = _STORY.fullmatch(sentence).groups()
        if verb in ("went to", "moved to", "journeyed to", "travelled to", "went back to"):
            assert at.get(actor) != thing
            at[actor] = thing
            for obj in carrying[actor]:
                if visits[obj][-1] != thing:
                    visits[obj].append(thing)
        elif verb in ("picked up", "got", "grabbed", "took"):
            assert holder.get(thing) is None and lying.get(thing, at[actor]) == at[actor]
            holder[thing] = actor
            carrying[actor].append(thing)
            lying.pop(thing, None)
            if not visits[thing] or visits[thing][-1] != at[actor]:
                visits[thing].append(at[actor])
        elif receiver is None:
            assert holder[thing] == actor
            holder[thing] = None
            carrying[actor].remove(thing)
            lying[thing] = at[actor]
        else:
            assert holder[thing] == actor and at[receiver] == at[actor]
            holder[thing] = receiver
            carrying[actor].remove(thing)
            carrying[receiver].append(thing)
    return at, holder, lying, carrying, visits


def _expected_answer(question, sentences):
    at, holder, lying, carrying, visits = _replay(sentences)
    if m := re.fullmatch(r"Where is the (\w+)\?", question):
        obj = m.group(1)
        return at[holder[obj]] if holder.get(obj) else lying[obj]
    if m := re.fullmatch(r"Where is (\w+)\?", question):
        return at[m.group(1)]
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question):
        history = visits[m.group(1)]
        assert history[-1] == m.group(2) and history.count(m.group(2)) == 1
        return history[-2]
    m = re.fullmatch(r"What is (\w+) carrying\?", question)
    return ",".join(carrying[m.group(1)]) or "nothing"


@pytest.mark.parametrize("task", [1, 2, 3, 8])
def test_babi_answers_match_an_independent_replay(task):
    for seed in range(25):
        example = make_babi(task, seed, n_sentences=14)
        sentences = example.document.split("\n")
        assert len(sentences) == 14
        assert example.answer == _expected_answer(example.question, sentences), (seed, example)
        assert all(0 <= i < 14 for i in example.meta["supporting"])
    assert make_babi(task, 3) == make_babi(task, 3)
    assert make_babi(task, 3).document != make_babi(task, 4).document
    if task == 1:
        assert all("went" in s or "moved" in s or "journeyed" in s or "travelled" in s
                   for s in make_babi(1, 0).meta["story"])


@pytest.mark.parametrize("task", [2, 3])
def test_babi_minimal_stories(task):
    example = make_babi(task, seed=0, n_sentences=3)
    assert example.answer == _expected_answer(example.question, example.document.split("\n"))


@pytest.mark.parametrize("task", [1, 2, 3, 8])
def test_babi_facts_spread_over_long_documents(task):
    example = make_babi(task, seed=7, n_sentences=20, length_chars=60_000, split="eval")
    assert len(example.document) == 60_000
    sentences = [m.group(0) for m in _STORY.finditer(example.document)]
    assert sentences == example.meta["story"]
    offsets = example.meta["offsets"]
    assert offsets == sorted(offsets) and offsets[-1] - offsets[0] > 30_000
    assert example.answer == _expected_answer(example.question, sentences)


# -- genome ------------------------------------------------------------------------------------------


def edit_distance(a: bytes, b: bytes) -> int:
    """Levenshtein distance by Myers/Hyyro bit-parallel DP (Python ints as bit vectors)."""
    if not a:
        return len(b)
    m, full, score = len(a), (1 << len(a)) - 1, len(a)
    high = 1 << (m - 1)
    peq: dict[int, int] = {}
    for i, c in enumerate(a):
        peq[c] = peq.get(c, 0) | (1 << i)
    pv, mv = full, 0
    for c in b:
        eq = peq.get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        score += 1 if ph & high else -1 if mh & high else 0
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def test_edit_distance_helper_and_mutation_bound():
    def plain(a, b):
        row = list(range(len(b) + 1))
        for i in range(1, len(a) + 1):
            prev, row[0] = row[0], i
            for j in range(1, len(b) + 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
        return row[-1]

    r = random.Random(0)
    for _ in range(100):
        a = bytes(r.choice(b"ACGT") for _ in range(r.randint(0, 40)))
        b = bytes(r.choice(b"ACGT") for _ in range(r.randint(0, 40)))
        assert edit_distance(a, b) == plain(a, b)
    rng = np.random.default_rng(0)
    for _ in range(50):
        seq = bytes(rng.choice(list(b"ACGTacgt"), size=400).tolist())
        mutated, edits = mutate(seq, 0.1, 0.3, rng)
        assert edit_distance(seq, mutated) <= edits


# Enough segmental duplications and inverted repeats to check, kept short so the check stays fast.
CONFIG = GenomeConfig(segdup_weight=0.03, inverted_weight=0.08, segdup_length=(1_000, 4_000))
LENGTH = 600_000


@pytest.fixture(scope="module")
def genome():
    return make_genome(LENGTH, seed=3, config=CONFIG)


def test_genome_is_exact_deterministic_and_chunking_free(genome):
    assert len(genome.sequence) == LENGTH
    assert set(genome.sequence) <= set(b"ACGT")
    chunks = list(iter_genome(LENGTH, 3, chunk_size=65_537, config=CONFIG))
    assert b"".join(c.sequence for c in chunks) == genome.sequence
    assert [c.start for c in chunks] == list(range(0, LENGTH, 65_537))
    streamed = sorted((f for c in chunks for f in c.features), key=lambda f: (f.start, f.end, f.kind))
    assert streamed == genome.annotations
    for chunk in chunks:
        assert all(f.end <= chunk.start + len(chunk.sequence) for f in chunk.features)
    other = make_genome(50_000, seed=4)
    assert len(other.sequence) == 50_000 and other.sequence != genome.sequence[:50_000]
    assert make_genome(50_000, seed=4) == other


def test_genome_has_every_structure(genome):
    kinds = {f.kind for f in genome.annotations}
    assert kinds == {"isochore", "gene", "tandem_repeat", "interspersed_repeat", "inverted_repeat",
                     "segmental_duplication"}
    assert all(0 <= f.start < f.end <= LENGTH for f in genome.annotations)


def test_genes_are_open_reading_frames(genome):
    genes = genome.features("gene")
    assert {g.strand for g in genes} == {"+", "-"}
    for gene in genes:
        orf = genome.sequence[gene.start : gene.end]
        if gene.strand == "-":
            orf = reverse_complement(orf)
        codons = [orf[i : i + 3] for i in range(0, len(orf), 3)]
        assert len(orf) % 3 == 0 and codons[0] == b"ATG" and codons[-1] in STOP_CODONS
        assert not any(c in STOP_CODONS for c in codons[1:-1])


def _check_copy(copy: bytes, source: bytes, divergence: float) -> None:
    assert edit_distance(source.upper(), copy.upper()) <= divergence * len(source) + 1e-9


def test_segmental_duplications_match_their_source(genome):
    duplications = genome.features("segmental_duplication")
    assert len(duplications) >= 3
    for dup in duplications:
        source = genome.sequence[dup.source_start : dup.source_end]
        if dup.strand == "-":
            source = reverse_complement(source)
        assert 10_000 <= dup.start - dup.source_end <= 500_000
        assert 0.0 < dup.divergence <= 0.03
        _check_copy(genome.sequence[dup.start : dup.end], source, dup.divergence)


def test_inverted_repeats_are_reverse_complements(genome):
    inverted = genome.features("inverted_repeat")
    assert len(inverted) >= 3
    for feature in inverted:
        source = genome.sequence[feature.source_start : feature.source_end]
        copy = genome.sequence[feature.start : feature.end]
        _check_copy(copy, reverse_complement(source), feature.divergence)


def test_interspersed_repeats_match_their_family(genome):
    copies = genome.features("interspersed_repeat")
    assert len({c.family for c in copies}) >= 3
    for copy in copies:
        consensus = genome.repeat_families[copy.family][copy.source_start : copy.source_end]
        seq = genome.sequence[copy.start : copy.end]
        if copy.strand == "-":
            seq = reverse_complement(seq)
        assert 0.0 <= copy.divergence <= 0.3
        _check_copy(seq, consensus, copy.divergence)


def test_tandem_repeats_repeat_their_unit(genome):
    repeats = genome.features("tandem_repeat")
    assert {len(r.unit) <= 6 for r in repeats} == {True, False}
    for repeat in repeats:
        seq = genome.sequence[repeat.start : repeat.end]
        perfect = (repeat.unit.encode() * len(seq))[: len(seq)]
        assert sum(a != b for a, b in zip(seq, perfect, strict=True)) <= repeat.divergence * len(seq) + 1e-9


def test_isochores_tile_the_genome_and_differ_in_gc(genome):
    isochores = genome.features("isochore")
    assert isochores[0].start == 0 and isochores[-1].end == LENGTH
    assert all(a.end == b.start for a, b in itertools.pairwise(isochores))
    long_ones = [f for f in isochores if len(f) >= 20_000]
    target = np.array([f.gc for f in long_ones])
    measured = np.array([
        sum(genome.sequence.count(base, f.start, f.end) for base in b"GC") / len(f) for f in long_ones
    ])
    assert len(long_ones) >= 5 and target.min() >= 0.35 and target.max() <= 0.60
    assert np.corrcoef(target, measured)[0, 1] > 0.8
    assert measured.max() - measured.min() > 0.05


def test_background_is_not_iid(genome):
    seq = genome.sequence
    gc = (seq.count(b"G") + seq.count(b"C")) / len(seq)
    assert seq.count(b"CG") / len(seq) < 0.9 * (gc / 2) ** 2  # CpG depletion


def test_soft_mask_and_gaps():
    plain = make_genome(200_000, seed=9)
    masked = make_genome(200_000, seed=9, soft_mask=True)
    assert masked.sequence.upper() == plain.sequence and masked.annotations == plain.annotations
    for feature in masked.features("tandem_repeat") + masked.features("interspersed_repeat"):
        assert masked.sequence[feature.start : feature.end].islower()
    gapped = make_genome(200_000, seed=9, n_runs=True, config=GenomeConfig(gap_weight=0.05))
    gaps = gapped.features("gap")
    assert len(gapped.sequence) == 200_000 and gaps
    assert all(set(gapped.sequence[g.start : g.end]) == {ord("N")} for g in gaps)
    assert gapped.sequence.count(b"N") == sum(len(g) for g in gaps)



def test_needle_spans_hold_the_needle_sentences():
    from titans_cli.tasks.niah import needle_spans

    example = make_niah(2048, seed=3, variant="multikey", n_needles=3)
    spans = needle_spans(example)
    assert [example.document[a:b] for a, b in spans] == example.meta["needles"]
    assert len(example.document.encode()) == len(example.document)  # ASCII: the spans are byte spans too
