"""`context_span`: the context hash against a plain loop, streaming with the table, and what it reads back."""

import dataclasses
from pathlib import Path

import pytest
import torch
from test_kmer_embedding import assert_appending_equals_one_ingest, mostly_bases
from test_model import assert_split_invariant

from titans_cli.errors import UserError
from titans_cli.models import TitansConfig, TitansModel
from titans_cli.models.context_memory import HASH_BITS, context_codes, signature_match
from titans_cli.training.trainer import start_from

from conftest import tiny_config


def context_config(variant: str = "mag", tokenizer: str = "dna", **overrides) -> TitansConfig:
    vocab = {"dna": 9, "bytes": 260}[tokenizer]
    fields = {"vocab_size": vocab, "tokenizer": tokenizer, "context_span": 5, "context_rows_log2": 8,
              "context_chunk": 16, **overrides}  # fmt: skip
    return tiny_config(variant, **fields)


def context_model(variant: str = "mag", tokenizer: str = "dna", **overrides) -> TitansModel:
    """With random gate weights, so θ, η, α and the gain vary from token to token."""
    model = TitansModel(context_config(variant, tokenizer, **overrides)).double().eval()
    with torch.no_grad():
        model.context_memory.gates.weight.normal_(std=0.5)
    return model


def test_context_codes_match_a_plain_loop():
    span, alphabet = 4, 4
    table = torch.randint(0, 2**HASH_BITS, (span, 9), generator=torch.Generator().manual_seed(1))
    ids = mostly_bases((2, 40))
    codes, complete = context_codes(ids, table, alphabet)
    assert codes.shape == complete.shape == (2, 37)
    for b in range(2):
        for t in range(37):
            window = ids[b, t : t + span].tolist()  # oldest first; lag 0 is the newest
            want = 0
            for lag in range(span):
                want ^= int(table[lag, window[span - 1 - lag]])
            assert codes[b, t].item() == want
            assert complete[b, t].item() == (max(window) < alphabet)


@pytest.mark.parametrize("variant", ["lmm", "mag", "mal", "mac"])
@pytest.mark.parametrize("tokenizer", ["dna", "bytes"])
def test_split_invariance_with_a_context_memory(variant, tokenizer):
    """The table, its momentum, the pending part of its chunk and the last n ids all travel in the state."""
    model = context_model(variant, tokenizer)
    sample = mostly_bases if tokenizer == "dna" else None
    assert_split_invariant(model, seed=1, sample=sample)


def test_a_copy_is_read_back_from_its_first_context_on():
    """Random bases with a 200-base stretch copied 600 bases later: from the copy's (n + 1)-th base on, the
    memory's read is the next base, since each of its contexts was written once, with that base after it."""
    model = TitansModel(context_config("lmm", context_span=8, context_rows_log2=16)).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (1, 1000), generator=g)
    tokens[0, 800:] = tokens[0, 100:300]
    with torch.no_grad():
        hidden = model.norm(model.embed(tokens))
        bonus, _ = model.context_memory(tokens, hidden, model.context_memory.init_state(1, tokens.device))
    copy = slice(808, 999)  # positions whose last 8 bases lie inside the copy; each predicts the next base
    predicted = bonus[0, copy].argmax(-1)
    assert (predicted == tokens[0, 809:1000]).float().mean() >= 0.95
    assert (bonus[0, copy].max(-1).values > 1.0).all()
    first = bonus[0, 108:299]  # the stretch's first reading, random bases before it: almost nothing to read
    assert (first.max(-1).values > 1.0).float().mean() < 0.1


def test_a_read_counts_only_where_the_row_holds_the_querys_own_context():
    """signature_match: a row written only under the query's context (any number of times, any next tokens,
    any scale) matches fully; one written under another context, or mixed with one, does not; empty reads 0."""
    u, other = torch.tensor(1.25), torch.tensor(1.75)
    own = 0.3 * torch.tensor([0.7, 0.3, 0.0, 0.0, 1.25])  # two writes under u: mass 1, signature u
    foreign = 0.3 * torch.tensor([0.0, 1.0, 0.0, 0.0, 1.75])
    rows = torch.stack([own, foreign, 0.5 * own + 0.5 * foreign, torch.zeros(5)])
    match = signature_match(rows, u.expand(4))
    assert torch.allclose(match, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert signature_match(foreign[None], other[None]).item() == pytest.approx(1.0)


def test_rows_shared_by_many_contexts_read_almost_nothing():
    """With 2 rows every row mixes many contexts, so reads are rejected by their signatures (an 8-base
    context recurs by chance in 1,000 random bases only rarely); with 2^16 rows the copy reads back."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (1, 1000), generator=g)
    tokens[0, 800:] = tokens[0, 100:300]
    reads = {}
    for rows in (1, 16):
        model = TitansModel(context_config("lmm", context_span=8, context_rows_log2=rows)).eval()
        with torch.no_grad():
            hidden = model.norm(model.embed(tokens))
            bonus, _ = model.context_memory(tokens, hidden, model.context_memory.init_state(1, tokens.device))
        reads[rows] = (bonus[0, 808:999].max(-1).values > 0.5).float().mean().item()
    assert reads[16] == 1.0 and reads[1] < 0.05, reads


def test_without_signatures_shared_rows_read_their_mixture():
    """`context_signature = False` (text-tiny's): the table holds the alphabet alone and a read from a row
    that other contexts share is not rejected, so with 2 rows nearly every base reads something."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (1, 1000), generator=g)
    model = TitansModel(context_config("lmm", context_span=8, context_rows_log2=1, context_signature=False)).eval()
    state = model.context_memory.init_state(1, tokens.device)
    assert state["ctx.table"].shape == (1, 2, 4)
    with torch.no_grad():
        bonus, _ = model.context_memory(tokens, model.norm(model.embed(tokens)), state)
    assert (bonus[0, 600:].abs().max(-1).values > 0.5).float().mean() > 0.95


@pytest.mark.parametrize("tokenizer", ["dna", "bytes"])
def test_streaming_splits_agree_without_signatures(tokenizer):
    model = context_model("mag", tokenizer, context_signature=False)
    assert_split_invariant(model, seed=2, sample=mostly_bases if tokenizer == "dna" else None)


def test_incomplete_contexts_neither_write_nor_read():
    """N, a special or the start of the stream inside the n ids before a token: no write, no read."""
    model = context_model("lmm", context_chunk=32)  # one chunk: every token's write stays pending in the state
    tokens = torch.tensor([[0, 1, 2, 3, 0, 1, 4, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]])
    with torch.no_grad():
        hidden = model.norm(model.embed(tokens))
        bonus, state = model.context_memory(tokens, hidden, model.context_memory.init_state(1, tokens.device))
    # windows of 5 ending at t (the query of t) are complete only at t = 4, 5 and from 11 on
    read = bonus[0].abs().sum(-1) > 0
    assert not read[:4].any() and not read[6:11].any()
    # token t is written under the window ending at t − 1: complete for t = 5 and 6 (but 6 is N) and from 12 on
    written = state["ctx.pend_theta"][0] > 0
    assert written.tolist() == [t == 5 or t >= 12 for t in range(17)]


def test_a_frozen_context_memory_adds_nothing():
    model = context_model("lmm")
    model.memory_learning = False
    assert not model.context_memory.learning
    tokens = mostly_bases((1, 80))
    tokens[0, 50:80] = tokens[0, 10:40]
    with torch.no_grad():
        hidden = model.norm(model.embed(tokens))
        bonus, state = model.context_memory(tokens, hidden, model.context_memory.init_state(1, tokens.device))
    assert not bonus.any() and not state["ctx.table"].any()


def test_rows_are_a_capacity_not_a_weight():
    """The same weights run with any row count (`TrainConfig.context_rows_log2` trains with fewer)."""
    small, large = (TitansModel(context_config(context_rows_log2=r)) for r in (6, 12))
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    assert shapes == {k: v.shape for k, v in large.state_dict().items()}
    assert large.init_state(1).layers[0]["ctx.table"].shape == (1, 4096, 5)  # 4 bases and the signature


def test_the_gates_and_gain_learn_from_the_outer_loss():
    model = TitansModel(context_config("mag")).train()
    tokens = mostly_bases((2, 120))
    tokens[:, 70:110] = tokens[:, 10:50]
    logits, _ = model(tokens)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 9), tokens[:, 1:].reshape(-1)).backward()
    for name, p in model.context_memory.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_config_refuses_bad_context_settings():
    with pytest.raises(ValueError, match="context_span must be ≥ 0"):
        context_config(context_span=-1)
    with pytest.raises(ValueError, match="context_rows_log2 must be 1 to 24"):
        context_config(context_rows_log2=30)


def test_fine_tuning_may_add_a_context_memory(tmp_path: Path):
    """`init_from` a model without one: its weights are copied, the context memory starts fresh."""
    base = TitansModel(context_config(context_span=0, name="base"))
    base.save_pretrained(tmp_path / "base")
    model = TitansModel(context_config())
    fresh = {k: v.clone() for k, v in model.context_memory.state_dict().items()}
    start_from(model, str(tmp_path / "base"))
    assert torch.equal(model.embed.weight, base.embed.weight)
    for k, v in model.context_memory.state_dict().items():
        assert torch.equal(v, fresh[k]), k
    other = TitansModel(context_config(context_span=0, d_model=64))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="config differs"):
        start_from(model, str(tmp_path / "other"))


def test_a_memory_file_keeps_the_context_table_so_appending_equals_one_ingest(tmp_path: Path):
    """The table, its momentum, the pending chunk and the tail are state tensors: saved with the memory and
    read back, the second file's first contexts reach into the first file's last bases as in one ingest."""
    config = dataclasses.replace(context_config("lmm", n_layers=1), name="tiny-dna-context")
    assert_appending_equals_one_ingest(tmp_path, config)
