import pytest
import torch

from titans_cli.models import byte_tokenizer, dna_tokenizer, tokenizer_for


def test_bytes_round_trip_any_byte():
    tok = byte_tokenizer()
    data = bytes(range(256)) + "naïve ☃".encode()
    ids = tok.encode(data)
    assert ids.dtype == torch.int64 and ids.max() < 256
    assert tok.decode(ids) == data
    assert tok.vocab_size == 260


def test_specials_in_prompt_text():
    tok = byte_tokenizer()
    ids = tok.encode_text("<SEP>Where is Mary?<SEP>")
    assert ids[0] == tok.sep and ids[-1] == tok.sep
    assert tok.decode(ids[1:-1]) == b"Where is Mary?"
    assert tok.decode([tok.bos, tok.eos]) == b"<BOS><EOS>"


def test_dna_folds_case_and_ambiguity():
    tok = dna_tokenizer()
    assert tok.decode(tok.encode(b"ACGTNacgtnRYkmU")) == b"ACGTNACGTNNNNNT"
    assert tok.vocab_size == 9


def test_dna_rejects_other_bytes():
    with pytest.raises(ValueError, match="offset 2"):
        dna_tokenizer().encode(b"AC-GT")


def test_tokenizer_for_names():
    assert tokenizer_for("dna").n_symbols == 5
    with pytest.raises(ValueError):
        tokenizer_for("words")
