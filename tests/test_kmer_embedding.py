"""`kmer_embedding`: the k-mer index against a plain loop, streaming with the k-mer tail, what it buys keys."""

import dataclasses
from pathlib import Path

import pytest
import torch
from test_model import assert_split_invariant

from titans_cli.evaluation.key_geometry import key_dimension
from titans_cli.ingest import IngestRequest, ingest
from titans_cli.memory_info import describe_memory
from titans_cli.models import TitansConfig, TitansModel, tokenizer_for
from titans_cli.models.kmer_embedding import BASES, TAIL_KEY, kmer_indices
from titans_cli.tasks import make_genome

from conftest import tiny_config, tiny_model


def dna_config(variant: str = "mag", **overrides) -> TitansConfig:
    return tiny_config(variant, **{"vocab_size": 9, "tokenizer": "dna", "kmer_embedding": 3, **overrides})


@pytest.mark.parametrize("k", [2, 3, 6])
def test_kmer_indices_match_a_plain_loop(k):
    """ids 0–3 are bases; N (4) and the specials (5–8) anywhere in a k-mer give the unknown row 4^k."""
    ids = torch.randint(0, 9, (3, 60), generator=torch.Generator().manual_seed(k))
    ids[:, 20:40] = torch.randint(0, 4, (3, 20))  # a stretch of bases only, so most k-mers there are known
    got = kmer_indices(ids, k)
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - k + 1):
            window = ids[b, t : t + k].tolist()
            want = BASES**k if max(window) >= BASES else sum(x * BASES ** (k - 1 - j) for j, x in enumerate(window))
            assert got[b, t].item() == want, (b, t, window)


def mostly_bases(shape: tuple[int, ...]) -> torch.Tensor:
    """DNA token ids: bases, with N and the specials now and then (so most k-mers are real ones)."""
    return torch.where(torch.rand(shape) < 0.05, 4 + torch.randint(0, 5, shape), torch.randint(0, 4, shape))


@pytest.mark.parametrize("variant, k", [("lmm", 3), ("mag", 3), ("mal", 3), ("mag", 6)])
@pytest.mark.parametrize("tied", [False, True])
def test_split_invariance_with_a_kmer_embedding(variant, k, tied):
    """A call's first k − 1 k-mers reach into the tokens before it: the state carries them."""
    model = TitansModel(dna_config(variant, tied_query=tied, kmer_embedding=k)).eval()
    assert_split_invariant(model, seed=0, sample=mostly_bases)


@pytest.mark.parametrize("variant", ["lmm", "mag", "mal"])
def test_kmer_vectors_keep_the_model_causal(variant):
    """A base changes its own k-mer and the next k − 1: outputs before it must not move."""
    model = TitansModel(dna_config(variant, kmer_embedding=6)).eval()
    tokens = mostly_bases((1, 90))
    with torch.no_grad():
        base, _ = model(tokens)
        for p in (0, 33, 89):
            changed = tokens.clone()
            changed[0, p] = (changed[0, p] + 1) % 4
            out, _ = model(changed)
            assert torch.equal(out[:, :p], base[:, :p]), f"position {p} leaked backwards"
            assert not torch.equal(out[:, p:], base[:, p:])


@pytest.mark.parametrize("variant", ["lmm", "mag", "mal"])
def test_the_kmer_table_learns_from_the_outer_loss(variant):
    model = TitansModel(dna_config(variant, kmer_embedding=6)).train()
    tokens = mostly_bases((2, 50))
    logits, _ = model(tokens)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 9), tokens[:, 1:].reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    table = model.kmer_embed.table.weight.grad
    assert (table.abs().sum(-1) > 0).sum() > 10  # every k-mer read gets its row's gradient


def test_a_fresh_stream_starts_from_unknown_kmers_and_the_tail_follows_the_stream():
    model = TitansModel(dna_config("lmm")).eval()
    tail = model.init_state(2).layers[0][TAIL_KEY]
    assert tail.shape == (2, 2) and (tail == BASES).all()  # nothing read: no base known
    tokens = torch.tensor([[0, 1, 2, 3, 0], [3, 3, 4, 2, 1]])
    with torch.no_grad():
        _, state = model(tokens)
    assert torch.equal(state.layers[0][TAIL_KEY], tokens[:, -2:])


def test_kmer_embedding_is_for_dna_models_only():
    with pytest.raises(ValueError, match="kmer_embedding is for the dna tokenizer"):
        tiny_config("mag", kmer_embedding=3)  # a byte model
    for k in (1, 11):
        with pytest.raises(ValueError, match="k from 2 to 10"):
            tiny_config("mag", vocab_size=9, tokenizer="dna", kmer_embedding=k)
    with pytest.raises(ValueError, match="not for MAC"):
        tiny_config("mac", vocab_size=9, tokenizer="dna", kmer_embedding=3)


def test_a_memory_file_keeps_the_kmer_tail_so_appending_equals_one_ingest(tmp_path: Path):
    """The tail is an int64 state tensor: saved with the memory and read back, the second file's first
    k-mers reach into the first file's last bases exactly as in one ingest."""
    assert_appending_equals_one_ingest(tmp_path, dna_config("lmm", n_layers=1, name="tiny-dna-kmer"))


def assert_appending_equals_one_ingest(tmp_path: Path, config: TitansConfig) -> None:
    """A 600-base genome in two FASTA files: one ingest of both, or the first then the second appended to
    its memory file, end in the same state (digest)."""
    torch.manual_seed(0)
    model_dir = tmp_path / config.name
    TitansModel(config).save_pretrained(model_dir)
    genome = make_genome(600, seed=3).sequence
    parts = [tmp_path / "a.fa", tmp_path / "b.fa"]
    parts[0].write_bytes(b">a\n" + genome[:333] + b"\n")
    parts[1].write_bytes(b">b\n" + genome[333:] + b"\n")
    ingest(IngestRequest([str(p) for p in parts], tmp_path / "together", str(model_dir), block_tokens=64))
    ingest(IngestRequest([str(parts[0])], tmp_path / "appended", str(model_dir), block_tokens=64))
    ingest(IngestRequest([str(parts[1])], tmp_path / "appended"))
    digests = [describe_memory(tmp_path / m)["state_digest"] for m in ("together", "appended")]
    assert digests[0] == digests[1]


@pytest.mark.parametrize("tied", [False, True])
def test_kmer_vectors_enter_keys_and_queries_but_not_values(tied):
    model = TitansModel(dna_config("lmm", tied_query=tied)).eval()
    memory = model.blocks[0].memory
    tokens = torch.randint(0, 4, (1, 30))
    state = model.init_state(1).layers[0]
    x = model.blocks[0].norm_mem(model.embed(tokens))
    key_input, _ = model.key_input(tokens, state[TAIL_KEY])
    with torch.no_grad():
        plain = memory.projections(x, state["mem.conv"])
        with_kmers = memory.projections(x, state["mem.conv"], key_input)
    assert not torch.allclose(plain[0], with_kmers[0]) and not torch.allclose(plain[1], with_kmers[1])
    assert torch.equal(plain[2], with_kmers[2])


@torch.no_grad()
def test_kmers_give_induction_keys_more_directions_than_single_bases_can():
    """Keyed on 12 single bases, a key is SiLU of a linear function of a 12 × 4 one-hot, whose centred part
    has rank at most 12 · 3 = 36 however wide the head (128 here): 30 directions after the SiLU. With
    6-mer vectors in the keys: 103."""
    tokens = tokenizer_for("dna").encode(make_genome(4000, seed=5).sequence)[None]
    dims = {}
    for k in (0, 6):
        torch.manual_seed(0)
        dims[k] = key_dimension(tiny_model("lmm", vocab_size=9, tokenizer="dna", d_model=128, n_heads=1, n_layers=1,
                                           memory_init="induction", memory_grad_clip=1.0, conv_kernel=13,
                                           induction_span=12, tied_query=True, kmer_embedding=k), tokens,
                                skip=12)  # fmt: skip
    assert dims[0] < 40 and dims[6] > 2.5 * dims[0], dims


@pytest.mark.parametrize("init", ["random", "induction"])
def test_a_kmer_table_leaves_the_other_initial_weights_as_they_were(init):
    """The table is drawn last, so comparisons with and without k-mers start from the same other weights."""
    models = []
    for k in (0, 3):
        torch.manual_seed(0)
        config = dataclasses.replace(dna_config(memory_init=init, memory_grad_clip=1.0), kmer_embedding=k)
        models.append(TitansModel(config).state_dict())
    plain, with_kmers = models
    assert set(with_kmers) - set(plain) == {n for n in with_kmers if n.startswith("kmer_embed.")} != set()
    assert all(torch.equal(plain[n], with_kmers[n]) for n in plain)
