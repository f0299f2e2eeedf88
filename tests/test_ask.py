"""`titans ask`: answers from a saved memory equal reading the document then the prompt; MEM is untouched."""

import json
import os

import pytest
import torch

from titans_cli.ask import AskOptions, ask, evidence_for, find_evidence, read_questions
from titans_cli.cli import main
from titans_cli.errors import UserError
from titans_cli.evaluation.generate import decode, prompt_ids, read, stop_ids
from titans_cli.ingest import IngestRequest, ingest
from titans_cli.memory_store import MemoryStore, state_digest
from titans_cli.models import byte_tokenizer
from titans_cli.saved_memory import load_memory

from conftest import tiny_config, tiny_model

DOCUMENT = b"Notes from the lab.\nThe special magic number for quiet-heron is: 8812.\n" + b"filler text. " * 40


@pytest.fixture
def memory(tmp_path):
    model = tiny_model("mac")
    model.save_pretrained(tmp_path / "model")
    doc = tmp_path / "doc.txt"
    doc.write_bytes(DOCUMENT)  # 589 bytes: whole blocks of 16 plus a pending tail
    ingest(IngestRequest([str(doc)], tmp_path / "mem", model=str(tmp_path / "model"), block_tokens=64))
    return tmp_path


def test_answer_equals_reading_the_document_then_the_prompt(memory):
    loaded = load_memory(memory / "mem", "cpu")
    assert len(loaded.snapshot.pending) > 0  # the tail the ingest left pending is read too
    got = ask(loaded, ["What is the special magic number?"], AskOptions(max_tokens=10))[0]
    model = loaded.model
    tok = byte_tokenizer()
    _, state = read(model, tok.encode(DOCUMENT)[None], piece_tokens=100)
    logits, state = read(model, prompt_ids(model.config, tok, "What is the special magic number?")[None], state)
    (want,), _ = decode(model, logits, state, 10, stop_ids(tok))
    assert got.answer == tok.decode(want.ids).decode(errors="replace")
    assert got.tokens == len(want.ids) and got.stopped == want.stopped
    assert got.mean_logprob < 0


def test_a_batch_of_questions_equals_asking_each_alone(memory):
    loaded = load_memory(memory / "mem", "cpu")
    questions = ["Who?", "What is the number?", "Why?", "What is the magic?"]  # two share a prompt length
    together = ask(loaded, questions, AskOptions(max_tokens=6))
    alone = [ask(loaded, [q], AskOptions(max_tokens=6))[0] for q in questions]
    assert [a.question for a in together] == questions
    for a, b in zip(together, alone):
        assert a.answer == b.answer
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)


def test_sampling_is_seeded(memory):
    loaded = load_memory(memory / "mem", "cpu")
    runs = [ask(loaded, ["Q?"], AskOptions(max_tokens=12, temperature=1.0, top_k=50, seed=s))[0].answer
            for s in (1, 1, 2)]  # fmt: skip
    assert runs[0] == runs[1] != runs[2]


def test_a_sampled_answer_does_not_depend_on_its_batch(memory):
    loaded = load_memory(memory / "mem", "cpu")
    options = AskOptions(max_tokens=12, temperature=1.0, seed=5)
    questions = ["Who?", "Why?", "How?", "Who?"]  # one prompt length: one batch
    together = [a.answer for a in ask(loaded, questions, options)]
    alone = [ask(loaded, [q], options)[0].answer for q in questions]
    assert together == alone and together[0] == together[3] and len(set(together)) > 1


def test_ask_never_modifies_the_memory(memory, capsys):
    store = MemoryStore(memory / "mem")
    before = state_digest(store.load().stored_tensors())
    files = {p: p.stat().st_mtime_ns for p in (memory / "mem").rglob("*")}
    assert main(["ask", str(memory / "mem"), "What is the special magic number?", "--max-tokens", "5"]) == 0
    assert state_digest(store.load().stored_tensors()) == before
    assert {p: p.stat().st_mtime_ns for p in (memory / "mem").rglob("*")} == files


def test_cli_json_and_questions_file(memory, capsys):
    questions = memory / "q.jsonl"
    questions.write_text('{"question": "What is the number?"}\n\n"Who wrote it?"\nplain question\n')
    assert main(["ask", str(memory / "mem"), "--questions", str(questions), "--json", "--max-tokens", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in rows] == ["What is the number?", "Who wrote it?", "plain question"]
    assert all(set(r) >= {"answer", "mean_logprob", "tokens", "seconds", "evidence"} for r in rows)
    assert all(0 < r["tokens"] <= 4 or r["stopped"] for r in rows)


def test_question_lines_that_only_look_like_json_are_questions(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text('"Hi" - who said it?\n"a JSON string"\n')
    assert read_questions(path) == ['"Hi" - who said it?', "a JSON string"]


def test_markers_in_a_question_are_plain_text():
    from titans_cli.evaluation.generate import prompt_ids

    model = tiny_model("mac")
    tok = byte_tokenizer()
    ids = prompt_ids(model.config, tok, "a <SEP> b")
    assert ids.tolist().count(tok.sep) == 2  # the template's two, not the question's
    assert tok.decode(ids) == b"<SEP>a <SEP> b<SEP>"


def test_an_empty_question_is_a_user_error(memory, capsys):
    assert main(["ask", str(memory / "mem"), "  "]) == 2
    assert "the question is empty" in capsys.readouterr().err


def test_bad_questions_file_names_the_line(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("fine\n{not json\n")
    with pytest.raises(UserError, match=r"q.txt:2: not valid JSON"):
        read_questions(path)


def test_evidence_points_at_the_answer_in_unchanged_sources(memory):
    sources = MemoryStore(memory / "mem").load().sources
    (found, many, none), notes = find_evidence(sources, ["8812", "filler", "absent"], limit=3)
    assert notes == [] and len(found) == 1 and none == []
    assert found[0].offset == DOCUMENT.index(b"8812") and "quiet-heron is: 8812" in found[0].snippet
    assert [e.offset for e in many] == [DOCUMENT.index(b"filler") + 13 * i for i in range(3)]
    (memory / "doc.txt").write_bytes(DOCUMENT.replace(b"8812", b"9999"))
    (found,), notes = find_evidence(sources, ["8812"])
    assert found == [] and "changed since it was ingested" in notes[0]
    os.remove(memory / "doc.txt")
    assert "no longer present" in find_evidence(sources, ["8812"])[1][0]


def test_evidence_is_found_from_another_directory(tmp_path, monkeypatch):
    """Sources ingested by a relative path are recorded absolute, so `ask --evidence` works from anywhere."""
    tiny_model("mac").save_pretrained(tmp_path / "model")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "doc.txt").write_bytes(DOCUMENT)
    monkeypatch.chdir(tmp_path / "docs")
    ingest(IngestRequest(["doc.txt"], tmp_path / "mem", model=str(tmp_path / "model"), block_tokens=64))
    monkeypatch.chdir(tmp_path)
    sources = MemoryStore(tmp_path / "mem").load().sources
    assert sources[0].path == str(tmp_path / "docs" / "doc.txt")
    (found,), notes = find_evidence(sources, ["8812"])
    assert notes == [] and found[0].offset == DOCUMENT.index(b"8812")


def test_a_quoting_models_evidence_is_where_its_quoted_values_occur(memory):
    """A quoting model's answer may mis-copy the sentence around the value: evidence looks for the values."""
    sources = MemoryStore(memory / "mem").load().sources
    quote, value = tiny_config("mag", answer_style="quote"), tiny_config("mag")
    answer = "The special magic number for quiet-hexon is: 8812. The special magic number for x is: filler."
    (found,), notes = evidence_for(quote, sources, [answer])
    assert notes == [] and found[0].offset == DOCUMENT.index(b"8812") and len(found) == 3  # limit per answer
    assert evidence_for(value, sources, [answer])[0] == [[]]  # not a quoting model: the whole answer
    assert evidence_for(quote, sources, ["8812"])[0] == find_evidence(sources, ["8812"])[0]  # nothing quoted


def test_cli_evidence_goes_to_stderr(memory, capsys, monkeypatch):
    from titans_cli import ask as ask_module

    real = ask_module.ask

    def planted(loaded, questions, options):  # the random test model cannot answer; plant its answer
        return [a.__class__(**{**a.__dict__, "answer": "8812"}) for a in real(loaded, questions, options)]

    monkeypatch.setattr("titans_cli.ask_command.ask", planted)
    assert main(["ask", str(memory / "mem"), "What is the number?", "--evidence"]) == 0
    out, err = capsys.readouterr()
    assert out == "8812\n"
    assert f"doc.txt:{DOCUMENT.index(b'8812')}:" in err and "quiet-heron is: 8812" in err


def test_a_match_straddling_two_pieces_is_found(tmp_path, monkeypatch):
    from titans_cli import ask as ask_module

    text = tmp_path / "t.txt"
    text.write_bytes(b"x" * 30 + b"NEEDLE" + b"y" * 30)
    original = ask_module.open_input
    monkeypatch.setattr(ask_module, "open_input", lambda paths, kind: original(paths, kind=kind, piece_size=32))
    found = [[], []]
    ask_module._search(str(text), [b"NEEDLE", b"D"], found, 5, 10)
    assert [e.offset for e in found[0]] == [30] and found[0][0].snippet == "xxxxxxxxxxNEEDLEyyyyyyyyyy"
    assert [e.offset for e in found[1]] == [33]


def test_a_dna_memory_is_refused(tmp_path, capsys):
    model = tiny_model("mac", vocab_size=9, tokenizer="dna")
    model.save_pretrained(tmp_path / "dna")
    (tmp_path / "g.fa").write_text(">a\nACGTACGT\n")
    ingest(IngestRequest([str(tmp_path / "g.fa")], tmp_path / "mem", model=str(tmp_path / "dna")))
    assert main(["ask", str(tmp_path / "mem"), "what?"]) == 2
    assert "ask needs a text model" in capsys.readouterr().err


def test_missing_memory_is_a_user_error(tmp_path, capsys):
    assert main(["ask", str(tmp_path / "nothing"), "what?"]) == 2
    assert "not a titans memory" in capsys.readouterr().err
    assert main(["ask", str(tmp_path / "nothing")]) == 2


def test_expand_state_rows_are_independent():
    from titans_cli.evaluation.generate import expand_state

    model = tiny_model("mac")
    _, state = read(model, torch.randint(0, 256, (1, 40)))
    tokens = torch.randint(0, 256, (3, 5))
    together, _ = model(tokens, expand_state(state, 3))
    for row in range(3):
        alone, _ = model(tokens[row : row + 1], state)
        torch.testing.assert_close(together[row], alone[0], atol=1e-5, rtol=0)
