"""`titans eval`: reading in pieces, greedy decoding, QA accuracy, DNA bits per base and its baselines."""

import json
import math
import random
import re

import numpy as np
import pytest
import torch

from titans_cli.cli import main
from titans_cli.evaluation.answers import answer_text, is_correct
from titans_cli.evaluation.baselines import base_codes, compressed_bits_per_base, markov_bits
from titans_cli.evaluation.console import parse_lengths
from titans_cli.evaluation.dna_eval import evaluate_dna, far_repeat_mask
from titans_cli.evaluation.generate import decode, prompt_ids, read, stop_ids
from titans_cli.evaluation.seeds import EVAL_BIT, eval_seed, train_seed
from titans_cli.evaluation.suites import FAMILIES
from titans_cli.evaluation.text_eval import evaluate_text
from titans_cli.models import TitansModel, byte_tokenizer
from titans_cli.tasks import make_babi, make_genome, make_kv, make_niah

from conftest import tiny_config, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention on shared CI cores


def dna_model() -> TitansModel:
    return TitansModel(tiny_config("mac", vocab_size=9, tokenizer="dna")).eval()


def test_markov_matches_a_hand_computation():
    # "AACA", order 1, alpha 1/2: P = (n(ctx, b) + 1/2) / (n(ctx) + 2), counts over earlier positions only.
    # t0 no context yet: 1/4.  t1 ctx A, unseen: 1/4.  t2 ctx A seen once (→A): P(C) = 0.5/3.
    # t3 ctx C unseen: 1/4.
    bits = markov_bits(base_codes(b"AACA"), k=1)
    np.testing.assert_allclose(bits, [2, 2, math.log2(6), 2])
    # Order 2 on "ACACA": t2 ctx (start, A)... each context is new until t4, ctx "AC" seen once (→A): 1.5/3.
    bits = markov_bits(base_codes(b"ACACA"), k=2)
    np.testing.assert_allclose(bits, [2, 2, 2, 2, 1])


def test_markov_learns_a_long_exact_repeat():
    rng = random.Random(0)
    unit = bytes(rng.choice(b"ACGT") for _ in range(3000))
    bits = markov_bits(base_codes(unit + unit), k=12)
    assert bits[:3000].mean() > 1.9  # random DNA: no model beats 2 bits
    # In the copy each 12-mer context has been seen once, followed by the right base: KT gives
    # (1 + 1/2) / (1 + 2) = 1/2, one bit, where an unseen context costs two.
    assert np.mean(bits[3100:] == 1.0) > 0.99 and bits[3100:].mean() < 1.01


def test_compressors_are_sane():
    rng = random.Random(0)
    random_dna = bytes(rng.choice(b"ACGT") for _ in range(20000))
    rates = compressed_bits_per_base(random_dna)
    assert set(rates) == {"gzip", "xz"}
    assert all(1.9 < r < 3.0 for r in rates.values())
    assert all(r < 0.1 for r in compressed_bits_per_base(b"ACGT" * 5000).values())


def test_seed_spaces_are_disjoint():
    assert all(train_seed(0, i) < EVAL_BIT <= eval_seed(0, i) for i in range(100))
    assert eval_seed(1, "x") == eval_seed(1, "x") != eval_seed(2, "x")


def test_parse_lengths():
    assert parse_lengths("512, 4k,1m") == [512, 4096, 1 << 20]
    with pytest.raises(ValueError):
        parse_lengths("4q")


def test_reading_in_pieces_equals_one_call():
    model = tiny_model("mac")
    tokens = torch.randint(0, 256, (2, 70))
    whole, _ = read(model, tokens, piece_tokens=1000)
    pieces, _ = read(model, tokens, piece_tokens=9)
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=0)


def test_greedy_answer_continues_the_stream_exactly():
    model = tiny_model("mac")
    tok = byte_tokenizer()
    document = tok.encode(b"The special magic number for lucky-otter is: 1234567. " * 3)
    question = "What is the special magic number?"
    _, state = read(model, document[None], piece_tokens=50)
    prompt = prompt_ids(model.config, tok, question)
    logits, state = read(model, prompt[None], state)
    (out,), state = decode(model, logits, state, 12, stop_ids(tok))
    assert 0 < len(out.ids) <= 12 and state.position == len(document) + len(prompt) + len(out.ids)
    # Greedy through the state equals argmax over one call on document + prompt + answer.
    logits, _ = model(torch.cat([document, prompt, torch.tensor(out.ids)])[None])
    start = len(document) + len(prompt) - 1
    assert logits[0, start : start + len(out.ids)].argmax(-1).tolist() == out.ids


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_text_eval_runs_end_to_end(family):
    result = evaluate_text(tiny_model("mac"), family, [512], n=2, seed=3, piece_tokens=200, batch_size=2)
    assert [s.length for s in result.scores] == [512] * len(FAMILIES[family])
    for score in result.scores:
        assert score.n == 2 and 0 <= score.correct <= 2 and 0.0 <= score.accuracy <= 1.0
        assert score.task.startswith(family) and len(score.samples) == 2
    assert result.memory is True


def test_quoted_answers_are_the_asked_needles_in_document_order():
    """answer_style "quote": a NIAH answer is the needle sentence holding the asked value (all of them, in
    document order, for multivalue); KV and bAbI, and the "value" style, answer with the value alone."""
    value, quote = tiny_config("mag"), tiny_config("mag", answer_style="quote")
    single = make_niah(2000, 4, "single", "number")
    assert answer_text(quote, single) == f"The special magic number for {single.meta['key']} is: {single.answer}."
    multikey = make_niah(2000, 4, "multikey", "word")
    assert answer_text(quote, multikey) == multikey.meta["needles"][0]  # the asked needle, not a distractor
    multivalue = make_niah(3000, 4, "multivalue", "uuid")
    quoted = answer_text(quote, multivalue)
    positions = [quoted.index(f"is: {v}.") for v in multivalue.answer.split(", ")]  # the answer's order
    assert positions == sorted(positions) and all(n in quoted for n in multivalue.meta["needles"])
    for example in (single, multikey, multivalue, make_kv(8, 1), make_babi(1, 1)):
        assert answer_text(value, example) == example.answer
    for example in (make_kv(8, 1), make_babi(1, 1)):
        assert answer_text(quote, example) == example.answer


def test_a_quoted_answer_is_right_when_it_quotes_exactly_the_asked_values_in_order():
    quote, value = tiny_config("mag", answer_style="quote"), tiny_config("mag")
    single = make_niah(2000, 4, "single", "number")
    key, number = single.meta["key"], single.answer
    wrong_digit = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert is_correct(quote, single, f"The special magic number for {key[:-2]}xx is: {number}.")  # a slip in the key
    assert not is_correct(quote, single, f"The special magic number for {key} is: {wrong_digit}.")
    assert not is_correct(quote, single, f"The special magic number for {key} is: {number}9.")
    assert is_correct(value, single, f" {number}\n") and not is_correct(value, single, f"is: {number}")
    multikey = make_niah(3000, 4, "multikey", "number")
    assert is_correct(quote, multikey, multikey.meta["needles"][0])
    assert not is_correct(quote, multikey, " ".join(multikey.meta["needles"]))  # every needle, distractors too
    multivalue = make_niah(3000, 4, "multivalue", "word")
    values = multivalue.answer.split(", ")
    assert is_correct(quote, multivalue, " ".join(f"X is: {v}." for v in values))
    assert not is_correct(quote, multivalue, " ".join(f"X is: {v}." for v in reversed(values)))
    assert not is_correct(quote, multivalue, " ".join(f"X is: {v}." for v in values[:-1]))
    kv = make_kv(8, 1)
    assert is_correct(quote, kv, kv.answer) and not is_correct(quote, kv, f"x {kv.answer}")


def test_batched_reading_gives_the_same_answers():
    model = tiny_model("mag")
    one = evaluate_text(model, "kv", [512], n=2, batch_size=1)
    two = evaluate_text(model, "kv", [512], n=2, batch_size=2)
    assert one.scores[0].samples == two.scores[0].samples


def test_dna_eval_runs_end_to_end_with_baselines():
    result = evaluate_dna(dna_model(), [12_000], n=1, seed=1, piece_tokens=4096)
    (score,) = result.scores
    assert score.bases == 11_999 and 0 < score.repeat_bases < score.bases
    assert 2.5 < score.model < 4.0  # an untrained model: about log2(9) bits
    assert math.isfinite(score.model_repeats)
    assert 1.5 < score.gzip < 3.0 and 1.5 < score.xz < 3.0
    assert set(score.markov) == {2, 4, 8, 12} and score.markov_best_k in score.markov
    assert all(1.0 < v < 2.5 for v in score.markov.values())


def test_far_repeats_are_copies_beyond_the_attention_span():
    genome = make_genome(200_000, 5)
    near, far = far_repeat_mask(genome, 0), far_repeat_mask(genome, 100_000)
    assert near.sum() > far.sum() > 0 and not (far & ~near).any()
    copies = np.zeros_like(near)
    for f in genome.annotations:
        if f.kind in ("segmental_duplication", "inverted_repeat", "interspersed_repeat"):
            copies[f.start : f.end] = True
    assert not (near & ~copies).any()


def test_no_memory_leaves_the_memory_weights_unchanged():
    model = tiny_model("mac")
    model.memory_learning = False
    start = model.init_state(1)
    _, state = read(model, torch.randint(0, 256, (1, 100)), start, piece_tokens=30)
    for before, after in zip(start.layers, state.layers):
        for name in before:
            if name.startswith("mem.w"):
                torch.testing.assert_close(after[name], before[name], atol=0, rtol=0)


def test_eval_command_json_and_refusals(tmp_path, capsys):
    text = tmp_path / "text"
    tiny_model("mac").save_pretrained(text)
    assert main(["eval", "kv", "--model", str(text), "--lengths", "512", "--n", "1", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "kv" and report["scores"][0]["length"] == 512 and report["memory"] is True
    assert main(["eval", "dna", "--model", str(text), "-q"]) == 2  # a text model cannot score DNA
    assert main(["eval", "sudoku", "--model", str(text)]) == 2
    assert main(["eval", "kv", "--model", str(text), "--lengths", "big"]) == 2
    assert main(["eval", "niah", "--model", str(text), "--needle", "pearl"]) == 2
    assert main(["eval", "kv", "--model", str(text), "--needle", "word"]) == 2  # kv has no needles


def test_eval_niah_asks_for_the_needle_kind_it_is_given(capsys):
    """`--needle uuid`: every subtask's documents carry UUID values, and the expected answers are them."""
    assert main(["eval", "niah", "--model", "text-tiny", "--lengths", "768", "--n", "1", "--needle", "uuid",
                 "--json", "-q"]) == 0  # fmt: skip
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert [s["task"] for s in scores] == ["niah_single_uuid", "niah_multikey_uuid", "niah_multivalue_uuid"]
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert all(uuid.search(s["samples"][0]["expected"]) for s in scores)


def test_markdown_table_has_every_cell_of_the_console_table():
    from titans_cli.evaluation.console import markdown, text_table
    from titans_cli.evaluation.text_eval import TextEval, TextScore

    scores = [TextScore("niah_single", 1024, 4, 3, 0.75), TextScore("niah_single", 4096, 4, 1, 0.25),
              TextScore("niah_multikey", 1024, 4, 0, 0.0), TextScore("niah_multikey", 4096, 4, 4, 1.0)]  # fmt: skip
    lines = markdown(text_table(TextEval("niah", True, 0, scores, 1.0), "niah · m · memory on")).splitlines()
    assert lines[0] == "**niah · m · memory on**"
    assert lines[2:] == [
        "| task | 1k | 4k |",
        "| --- | --- | --- |",
        "| niah_single | 75% (3/4) | 25% (1/4) |",
        "| niah_multikey | 0% (0/4) | 100% (4/4) |",
    ]
