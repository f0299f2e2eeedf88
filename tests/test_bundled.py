"""The bundled models: resolvable by name from anywhere, described by their cards, and doing their jobs."""

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from titans_cli.model_registry import bundled_models, resolve_model
from titans_cli.models import TitansConfig

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["text-tiny", "dna-tiny"]


def test_both_models_ship_with_the_package():
    assert set(NAMES) <= set(bundled_models())


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_from_anywhere_and_matches_its_card(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ref = resolve_model(name)
    model = ref.load()
    cfg = model.config
    assert cfg.name == name
    card = (ref.path / "MODEL_CARD.md").read_text()
    shape = (f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, memory depth {cfg.memory_depth}, "
             f"chunk {cfg.chunk_size}, segment {cfg.segment_len}")  # fmt: skip
    assert shape in card
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in card
    assert "titans train" in card and "titans eval" in card
    assert (ref.path / "model.safetensors").stat().st_size <= 25 * 2**20


@pytest.mark.parametrize("name", NAMES)
def test_training_configs_beside_the_card_build_the_bundled_model(name):
    """Each train_config*.json a card names parses and describes the very model shipped, or, for a stage
    before a context memory was added (`init_from` may add one), that model without it; and the dna-tiny
    preset builds the shipped dna-tiny (text-tiny's later stages changed its architecture from its preset)."""
    from titans_cli.models.config import CONTEXT_FIELDS
    from titans_cli.training.config import TrainConfig
    from titans_cli.training.presets import preset

    ref = resolve_model(name)
    configs = sorted(ref.path.glob("train_config*.json"))
    assert configs
    without_context = dataclasses.replace(ref.config, **{f: getattr(TitansConfig(), f) for f in CONTEXT_FIELDS})
    for path in configs:
        model = TrainConfig.from_json(path.read_text()).model
        assert model == ref.config or (path.name != "train_config.json" and model == without_context), path.name
    if name == "dna-tiny":
        assert preset(name).model == ref.config


def readme_main_job() -> list[list[str]]:
    """The commands of the README's main-job block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"The main job.*?```bash\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_main_job_runs_end_to_end(tmp_path):
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    titans = [sys.executable, "-m", "titans_cli.cli"]
    for command in readme_main_job():
        assert command[0] == "titans"
        run = subprocess.run(titans + command[1:], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, (command, run.stderr[-2000:])
    assert (tmp_path / "scores.tsv").read_text().startswith("id\tsource\tlength")
    assert (tmp_path / "genome.bedgraph").read_text().startswith("track type=bedGraph")
    assert len((tmp_path / "variants.tsv").read_text().splitlines()) == 1 + 5  # 5 sites; a symbolic ALT skipped


def test_bundled_text_model_answers_the_fact_planted_in_the_sample_notes(tmp_path):
    """Issue #7: `samples/notes.txt` (samples/make_samples.py: held-out background text, a fact planted at a
    seeded depth) is ingested; `ask` returns the planted value. The fact lies further back than text-tiny's
    attention window, so only the memory carries it; the same notes with the fact cut out do not give it."""
    from titans_cli.ask import ask
    from titans_cli.ingest import IngestRequest, ingest
    from titans_cli.saved_memory import load_memory

    notes = (ROOT / "samples" / "notes.txt").read_text()
    expected = json.loads((ROOT / "samples" / "answers.json").read_text())
    window = resolve_model("text-tiny").load().config.window
    cut = notes
    for question, value in expected.items():
        key = question.split(" for ")[1].split(" mentioned")[0]
        sentence = f"The special magic number for {key} is: {value}. "
        assert len(notes) - notes.index(sentence) > window  # beyond attention's reach from the question
        cut = cut.replace(sentence, "")
    for name, text in (("notes.txt", notes), ("cut.txt", cut)):
        (tmp_path / name).write_text(text)
        ingest(IngestRequest([str(tmp_path / name)], tmp_path / f"{name}.mem"))
    questions = list(expected)
    answers = [a.answer for a in ask(load_memory(tmp_path / "notes.txt.mem"), questions)]
    assert all(expected[q] in a for q, a in zip(questions, answers, strict=True)), answers
    without = [a.answer for a in ask(load_memory(tmp_path / "cut.txt.mem"), questions)]
    assert not any(expected[q] in a for q, a in zip(questions, without, strict=True)), without


@pytest.mark.slow
def test_bundled_text_model_answers_most_of_several_facts_planted_in_held_out_documents(tmp_path):
    """Issue #7, several facts: four held-out 4 KiB documents (`bench/several_facts.py`'s first four seeds),
    each with three needles of distinct keys at seeded depths, are ingested one by one and every key is
    asked with `ask`. text-tiny answers 23–26 of 30 such facts (its card); at least 8 of these 12 must
    come back."""
    from titans_cli.ask import ask
    from titans_cli.evaluation.seeds import eval_seed
    from titans_cli.ingest import IngestRequest, ingest
    from titans_cli.saved_memory import load_memory
    from titans_cli.tasks import make_niah
    from titans_cli.tasks.niah import niah_question

    answered = []
    for i in range(4):
        example = make_niah(4096, eval_seed(0, "several-facts", 4096, i), "multikey", "number", split="eval",
                            n_needles=3)  # fmt: skip
        document = tmp_path / f"doc{i}.txt"
        document.write_text(example.document)
        ingest(IngestRequest([str(document)], tmp_path / f"doc{i}.mem"))
        questions = [niah_question("multikey", "number", key) for key in example.meta["keys"]]
        answers = ask(load_memory(tmp_path / f"doc{i}.mem"), questions)
        answered += [value in a.answer for value, a in zip(example.meta["values"], answers, strict=True)]
    assert sum(answered) >= 8, answered


def sample_bits(scores, start: int, end: int) -> float:
    """Mean bits per base over bases [start, end) of per-base natural-log likelihoods."""
    return float(-np.nanmean(scores[start:end]) / np.log(2))


@pytest.mark.slow
def test_bundled_dna_model_scores_a_repeat_low_the_second_time_and_against_a_memory_of_the_first(tmp_path):
    """Issue #7: in `samples/genome.fa` bases 20,000–25,000 of chrS come again 50 kb later, at 75,000. Read
    once, the copy costs far fewer bits than its first reading; scored from a memory that ingested the first
    copy alone (`samples/first_copy.fa`), it is low from its first bases, where a fresh memory is not."""
    from titans_cli.ingest import IngestRequest, ingest
    from titans_cli.readers import open_input
    from titans_cli.saved_memory import load_memory
    from titans_cli.scoring import Scorer

    with open_input([str(ROOT / "samples" / "genome.fa")], kind="dna") as reader:
        chrs = b"".join(piece.data for piece in reader if piece.record == "chrS")
    model = resolve_model("dna-tiny").load()
    fresh = Scorer(model).score_sequences([chrs])[0]
    first, second = sample_bits(fresh, 20_000, 25_000), sample_bits(fresh, 75_000, 80_000)
    assert second < 0.5 * first, (first, second)

    ingest(IngestRequest([str(ROOT / "samples" / "first_copy.fa")], tmp_path / "seen.mem"))
    seen = Scorer(model, load_memory(tmp_path / "seen.mem").state).score_sequences([chrs[75_000:80_000]])[0]
    alone = Scorer(model).score_sequences([chrs[75_000:80_000]])[0]
    start = model.config.context_span + 1  # the first base whose whole context lies inside the copy
    assert sample_bits(seen, start, 500) < 0.5 * sample_bits(alone, start, 500)
    assert sample_bits(seen, 0, 5_000) < 0.5 * sample_bits(alone, 0, 5_000)


def test_ingest_and_score_pick_the_bundled_model_for_the_input(tmp_path):
    from titans_cli.ingest import IngestRequest, ingest
    from titans_cli.memory_store import MemoryStore

    (tmp_path / "g.fa").write_text(">r\nACGTACGTTGCA\n")
    (tmp_path / "n.txt").write_text("a few words\n")
    ingest(IngestRequest([str(tmp_path / "g.fa")], tmp_path / "dna.mem"))
    ingest(IngestRequest([str(tmp_path / "n.txt")], tmp_path / "text.mem"))
    assert MemoryStore(tmp_path / "dna.mem").load().model_name == "dna-tiny"
    assert MemoryStore(tmp_path / "text.mem").load().model_name == "text-tiny"
