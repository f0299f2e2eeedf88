"""`titans train`: configs and presets, deterministic data, TBPTT, checkpoints and resume, DDP, the CLI."""

import dataclasses
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from titans_cli.cli import main
from titans_cli.errors import UserError
from titans_cli.model_registry import resolve_model
from titans_cli.models import TitansModel, tokenizer_for
from titans_cli.training import trainer
from titans_cli.training.checkpoint import latest_checkpoint
from titans_cli.training.config import DataConfig, OptimConfig, TrainConfig, load_train_config
from titans_cli.training.data import BatchMaker
from titans_cli.training.optimizer import lr_at
from titans_cli.training.presets import PRESETS, preset
from titans_cli.training.runlog import read_log
from titans_cli.training.trainer import PieceLoss, TrainRun, sequence_loss, train

from conftest import tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention on shared CI cores


def tiny_run(kind: str = "text", **overrides) -> TrainConfig:
    if kind == "dna":
        model = tiny_config("mac", vocab_size=9, tokenizer="dna")
        data = DataConfig(kind="dna", mixture={}, curriculum=[(0, 64)], genome_length=20_000, n_genomes=2)
    else:
        model = tiny_config("mac")
        data = DataConfig(kind="text", mixture={"kv": 1, "babi": 1, "lm": 1}, curriculum=[(0, 256)])
    fields = dict(model=model, data=data, optim=OptimConfig(lr=3e-3, warmup_steps=2), steps=6, batch_size=2,
                  tbptt_len=128, eval_every=0, eval_batches=1, log_every=1, checkpoint_every=2)  # fmt: skip
    fields.update(overrides)
    return TrainConfig(**fields)


def losses(run_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_log(run_dir / "log.jsonl") if e["event"] == "train"}


# -- configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_round_trippable_configs(name):
    config = preset(name)
    assert TrainConfig.from_json(config.to_json()) == config
    assert config.model.name == name
    assert config.model.vocab_size == tokenizer_for(config.model.tokenizer).vocab_size
    if name.endswith("tiny"):
        assert sum(p.numel() for p in TitansModel(config.model).parameters()) * 4 <= 25e6


def test_config_files_json_and_toml(tmp_path):
    pytest.importorskip("tomllib")  # Python ≥ 3.11
    config = tiny_run()
    (tmp_path / "run.json").write_text(config.to_json())
    assert load_train_config(tmp_path / "run.json") == config
    (tmp_path / "run.toml").write_text(
        'steps = 7\n[model]\nvariant = "mag"\nd_model = 64\n[data]\ncurriculum = [[0, 512], [5, 1024]]\n'
        "[data.mixture]\nkv = 1.0\n[optim]\nbetas = [0.9, 0.99]\n"
    )
    loaded = load_train_config(tmp_path / "run.toml")
    assert (loaded.steps, loaded.model.variant, loaded.data.mixture) == (7, "mag", {"kv": 1.0})
    assert loaded.data.length_at(4) == 512 and loaded.data.length_at(5) == 1024 and loaded.optim.betas == (0.9, 0.99)


@pytest.mark.parametrize("bad", [
    {"steps": 0},
    {"data": DataConfig(kind="dna", mixture={})},  # a byte model cannot read DNA
    {"model": tiny_config("mac", vocab_size=100)},  # too small for the byte tokenizer
])  # fmt: skip
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError):
        tiny_run(**bad)


def test_niah_needs_room():
    with pytest.raises(ValueError, match="512"):
        DataConfig(kind="text", mixture={"niah": 1.0}, curriculum=[(0, 256)])


def test_warmup_then_cosine():
    optim = OptimConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10)
    assert lr_at(0, optim, 110) == pytest.approx(0.1) and lr_at(9, optim, 110) == pytest.approx(1.0)
    assert lr_at(60, optim, 110) == pytest.approx(0.55)
    assert lr_at(110, optim, 110) == pytest.approx(0.1) and lr_at(500, optim, 110) == pytest.approx(0.1)


# -- data ----------------------------------------------------------------------------------------------


def test_text_batches_are_deterministic_and_weighted():
    config = tiny_run(batch_size=6)
    maker = BatchMaker(config)
    a, b = maker.train_batch(3, 0), BatchMaker(config).train_batch(3, 0)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.tokens, maker.train_batch(3, 1).tokens)  # another rank / micro-batch
    assert not torch.equal(a.tokens, maker.train_batch(4, 0).tokens)
    assert a.tokens.shape == a.targets.shape == (6, 256) and torch.equal(a.tokens[:, 1:], a.targets[:, :-1])
    tok = tokenizer_for("bytes")
    for row, component in enumerate(a.components):
        weights, answer = a.weights[row], a.answer[row]
        if component == "lm":
            assert not answer.any() and weights.sum() == pytest.approx(1 / 6)
            continue
        # QA: document, <SEP> question <SEP>, answer, <EOS>; the last answer target is EOS.
        assert (a.tokens[row] == tok.sep).sum() == 2
        assert a.targets[row][answer][-1] == tok.eos
        assert weights[answer].sum() == pytest.approx(1.0 / 6) and weights[~answer].sum() == pytest.approx(0.1 / 6)
    assert {"kv", "babi", "lm"} & set(a.components)


def test_a_subtask_component_draws_that_subtask_alone():
    """"niah.multikey" rows are multi-key NIAH only (needles of distinct keys); "niah" mixes subtasks."""

    def needle_keys(mixture: dict[str, float]) -> list[tuple[int, int]]:
        """(needles, distinct keys) of each row of a batch."""
        config = tiny_run(batch_size=8, data=DataConfig(kind="text", mixture=mixture, curriculum=[(0, 1024)]))
        batch = BatchMaker(config).train_batch(0, 0)
        assert set(batch.components) == {"niah"}  # logged under the family
        text = [tokenizer_for("bytes").decode(row.tolist()) for row in batch.tokens]
        rows = [re.findall(rb"magic \w+ for (\S+) is: ", t) for t in text]
        return [(len(keys), len(set(keys))) for keys in rows]

    assert all(needles == keys >= 2 for needles, keys in needle_keys({"niah.multikey": 1}))
    assert len(set(needle_keys({"niah": 1}))) > 1
    with pytest.raises(ValueError, match=r"niah\.multikey"):
        DataConfig(kind="text", mixture={"niah.several": 1.0}, curriculum=[(0, 512)])
    with pytest.raises(ValueError, match=r"unknown components kv\.kv"):  # a one-subtask family is named by itself alone
        DataConfig(kind="text", mixture={"kv.kv": 1.0}, curriculum=[(0, 512)])
    with pytest.raises(ValueError, match="512"):
        DataConfig(kind="text", mixture={"niah.single": 1.0}, curriculum=[(0, 256)])


def test_quoting_models_are_trained_to_answer_with_the_needle_sentence():
    """answer_style "quote": a NIAH row's answer targets are a needle sentence of its document, then EOS."""
    config = tiny_run(model=tiny_config("mag", answer_style="quote"), batch_size=4,
                      data=DataConfig(kind="text", mixture={"niah": 1}, curriculum=[(0, 512)]))  # fmt: skip
    batch = BatchMaker(config).train_batch(0, 0)
    tok = tokenizer_for("bytes")
    for row in range(4):
        answer = batch.targets[row][batch.answer[row]]
        assert answer[-1] == tok.eos
        sentence = tok.decode(answer[:-1].tolist()).decode()
        document = tok.decode(batch.tokens[row][: (batch.tokens[row] == tok.sep).nonzero()[0]].tolist()).decode()
        assert sentence.startswith("The special magic ") and sentence.split(". The")[0].rstrip(".") + "." in document


def test_held_out_batches_differ_from_training():
    maker = BatchMaker(tiny_run())
    assert torch.equal(maker.held_out_batch(0).tokens, maker.held_out_batch(0).tokens)
    assert not torch.equal(maker.held_out_batch(0).tokens, maker.train_batch(0, 0).tokens)


def test_dna_batches_are_genome_windows():
    batch = BatchMaker(tiny_run("dna", batch_size=4)).train_batch(0, 0)
    assert batch.tokens.shape == (4, 64) and batch.tokens.max() <= 3  # A C G T only
    assert batch.components == ["dna"] * 4 and batch.weights.sum() == pytest.approx(1.0)


# -- the loop ------------------------------------------------------------------------------------------


def test_tbptt_pieces_carry_the_memory_state():
    config = tiny_run()
    model = TitansModel(config.model).train()
    batch = BatchMaker(config).train_batch(0, 0)
    whole = sequence_loss(PieceLoss(model), model, batch, 256, 1.0, True, torch.device("cpu"))
    pieces = sequence_loss(PieceLoss(model), model, batch, 48, 1.0, True, torch.device("cpu"))
    assert pieces == pytest.approx(whole, abs=1e-5)  # the forward pass is split-invariant


def test_a_few_steps_lower_the_loss(tmp_path):
    config = tiny_run(data=DataConfig(kind="text", mixture={"lm": 1}, curriculum=[(0, 256)]), steps=8,
                      optim=OptimConfig(lr=1e-2, warmup_steps=1))  # fmt: skip
    report = train(TrainRun(out=tmp_path / "run", config=config))
    curve = losses(tmp_path / "run")
    assert report.step == 8 and len(curve) == 8
    assert curve[8] < curve[1] - 1.0


def test_a_non_finite_gradient_skips_the_update(tmp_path, monkeypatch):
    real = trainer.sequence_loss
    calls = []

    def overflowing_second_step(step_fn, model, *args):
        loss = real(step_fn, model, *args)
        calls.append(loss)
        if len(calls) == 2:
            for p in model.parameters():
                p.grad.fill_(float("nan"))
        return loss

    monkeypatch.setattr(trainer, "sequence_loss", overflowing_second_step)
    report = train(TrainRun(out=tmp_path / "run", config=tiny_run(steps=3)))
    assert report.step == 3
    assert [e["step"] for e in read_log(tmp_path / "run" / "log.jsonl") if e["event"] == "skip"] == [2]
    assert all(torch.isfinite(p).all() for p in TitansModel.from_pretrained(tmp_path / "run" / "model").parameters())


def test_resume_continues_the_same_run(tmp_path):
    config = tiny_run(steps=4)
    train(TrainRun(out=tmp_path / "straight", config=config))
    first = train(TrainRun(out=tmp_path / "stopped", config=config, max_steps=2))
    assert first.step == 2 and latest_checkpoint(tmp_path / "stopped").name == "step-000000002"
    (tmp_path / "stopped" / "checkpoints" / ".tmp-step-000000003-1").mkdir()  # a kill mid-write
    train(TrainRun(out=tmp_path / "stopped", resume=True))
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "stopped")
    assert resumed[3] == straight[3] and resumed[4] == straight[4]  # exact on CPU float32
    a = TitansModel.from_pretrained(tmp_path / "straight" / "model")
    b = TitansModel.from_pretrained(tmp_path / "stopped" / "model")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not list((tmp_path / "stopped" / "checkpoints").glob(".tmp-*"))


def test_a_fine_tuning_run_starts_from_the_given_model(tmp_path):
    """init_from: step 0 is the source model's weights (a run of 0 optimiser steps exports them unchanged),
    the start event records the source and its content hash, and another architecture is refused."""
    train(TrainRun(out=tmp_path / "source", config=tiny_run(steps=2)))
    source = resolve_model(str(tmp_path / "source" / "model"))
    config = tiny_run(steps=3, init_from=str(tmp_path / "source" / "model"))
    train(TrainRun(out=tmp_path / "tuned", config=config, max_steps=0))
    exported = TitansModel.from_pretrained(tmp_path / "tuned" / "model").state_dict()
    fresh = TitansModel(config.model).state_dict()
    for name, weight in source.load().state_dict().items():
        assert torch.equal(exported[name], weight), name
    assert not all(torch.equal(exported[n], fresh[n]) for n in fresh)
    start = read_log(tmp_path / "tuned" / "log.jsonl")[0]
    assert start["init_from"] == [source.source, source.content_hash]
    other = tiny_run(model=dataclasses.replace(config.model, n_layers=3), init_from=config.init_from)
    with pytest.raises(UserError, match="init_from"):
        train(TrainRun(out=tmp_path / "other", config=other))


def test_an_untied_model_starts_a_tied_query_run(tmp_path):
    """init_from into tied_query (NeuralMemory.tie_query): at the induction init, where no key weighs its own
    token, the tied model makes the same keys, and its queries are the untied model's queries."""
    model = tiny_config("mag", memory_init="induction", memory_grad_clip=1.0, induction_span=3, conv_kernel=5)
    data = DataConfig(kind="text", mixture={"kv": 1, "lm": 1}, curriculum=[(0, 256)])
    train(TrainRun(out=tmp_path / "untied", config=tiny_run(model=model, data=data), max_steps=0))
    tied = dataclasses.replace(model, tied_query=True)
    config = tiny_run(model=tied, data=data, init_from=str(tmp_path / "untied" / "model"))
    train(TrainRun(out=tmp_path / "tied", config=config, max_steps=0))
    memories = [TitansModel.from_pretrained(tmp_path / name / "model").blocks[0].memory for name in ("untied", "tied")]
    x = torch.randn(1, 24, 32)
    with torch.no_grad():
        (q0, k0, v0, _), (q1, k1, v1, _) = (m.projections(x, m.init_state(1)["mem.conv"]) for m in memories)
    for a, b in ((q0, q1), (k0, k1), (v0, v1)):
        torch.testing.assert_close(a, b)
    back = tiny_run(model=model, data=data, init_from=str(tmp_path / "tied" / "model"))
    with pytest.raises(UserError, match="init_from"):
        train(TrainRun(out=tmp_path / "back", config=back))


def test_checkpoints_and_model_hold_no_pickle(tmp_path):
    out = tmp_path / "run"
    train(TrainRun(out=out, config=tiny_run(steps=3, eval_every=2)))
    files = {p.name for p in latest_checkpoint(out).iterdir()}
    assert files == {"model.safetensors", "optimizer.safetensors", "optimizer.json", "trainer.json"}
    assert len(list((out / "checkpoints").iterdir())) == 2  # keep_checkpoints
    ref = resolve_model(str(out / "model"))
    assert ref.load().config == tiny_run().model and (out / "model" / "MODEL_CARD.md").exists()
    events = [e["event"] for e in read_log(out / "log.jsonl")]
    assert events[0] == "start" and "eval" in events and events[-1] == "end"
    evaluation = next(e for e in read_log(out / "log.jsonl") if e["event"] == "eval")
    assert all(0 <= v <= 1 for v in evaluation["accuracy"].values()) and math.isfinite(evaluation["loss"])


def test_a_run_directory_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    train(TrainRun(out=out, config=tiny_run(steps=1)))
    with pytest.raises(UserError, match="--resume"):
        train(TrainRun(out=out, config=tiny_run(steps=1)))
    with pytest.raises(UserError, match="differs"):
        train(TrainRun(out=out, config=tiny_run(steps=2), resume=True))
    with pytest.raises(UserError, match="--preset or --config"):
        train(TrainRun(out=tmp_path / "empty", resume=True))


# -- distributed ---------------------------------------------------------------------------------------


def _rank(rank: int, port: int, config_json: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    train(TrainRun(out=Path(out), config=TrainConfig.from_json(config_json), device="cpu"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_equal_one_process_accumulating(tmp_path):
    """DDP averages the two ranks' gradients; one process accumulating both micro-batches must agree."""
    # Two TBPTT pieces per sequence: the first backward must not all-reduce, the last must.
    config = tiny_run("dna", steps=3, tbptt_len=40, checkpoint_every=10)
    mp.spawn(_rank, args=(_free_port(), config.to_json(), str(tmp_path / "ddp")), nprocs=2)
    single = tiny_run("dna", steps=3, tbptt_len=40, checkpoint_every=10, grad_accum=2)
    train(TrainRun(out=tmp_path / "one", config=single))
    ddp = TitansModel.from_pretrained(tmp_path / "ddp" / "model").state_dict()
    one = TitansModel.from_pretrained(tmp_path / "one" / "model").state_dict()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    assert json.loads((latest_checkpoint(tmp_path / "ddp") / "trainer.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_torchrun_launches_the_train_command(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(tiny_run("dna", steps=2, tbptt_len=40).to_json())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "titans_cli.cli", "train", "--config", str(config), "--out", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("train: start") == 1  # only rank 0 talks
    assert resolve_model(str(tmp_path / "run" / "model")).load().config.tokenizer == "dna"


# -- command line --------------------------------------------------------------------------------------


def test_train_command(tmp_path, capsys):
    assert main(["train", "--preset", "dna-tiny", "--print-config"]) == 0
    assert TrainConfig.from_json(capsys.readouterr().out) == preset("dna-tiny")
    config = tmp_path / "tiny.json"
    config.write_text(tiny_run("dna", steps=2).to_json())
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "-q"]) == 0
    assert (out / "model" / "model.safetensors").exists()
    assert main(["train", "--config", str(config), "--out", str(out), "-q"]) == 2  # exists: needs --resume
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "-q"]) == 2  # --steps needs a config
    assert main(["train", "--preset", "nope", "--out", str(out)]) == 2
    assert main(["train", "--preset", "text-tiny"]) == 2  # no --out


def test_planted_repeat_copies_a_stretch_beyond_the_gap():
    import random

    import numpy as np

    from titans_cli.tasks import reverse_complement
    from titans_cli.training.data import plant_repeat

    rng = np.random.default_rng(1)
    window = rng.choice(list(b"ACGT"), 1025).astype(np.uint8).tobytes()
    for seed in range(20):
        out = plant_repeat(window, random.Random(seed), gap=256)
        assert len(out) == len(window)
        changed = [i for i, (a, b) in enumerate(zip(window, out)) if a != b]
        start, end = changed[0], changed[-1] + 1  # the planted copy covers (at least) these positions
        size = end - start
        copy = out[start:end]
        # the copy matches some earlier stretch (or its reverse complement) that ends ≥ 256 bases before it
        hits = [s for s in range(0, start - 256 - size + 1)
                for src in (window[s : s + size], reverse_complement(window[s : s + size]))
                if sum(a != b for a, b in zip(src, copy)) <= max(2, size // 20)]  # fmt: skip
        assert hits, seed
    assert plant_repeat(window[:200], random.Random(0), gap=256) == window[:200]  # too short: unchanged


@pytest.mark.parametrize("kind", ["dna", "text"])
def test_repeat_settings_reach_every_row(kind, monkeypatch):
    """Each row draws `repeats_per_window` repeats at `repeat_gap_min` (default: two segments), DNA-mutated or exact."""
    from titans_cli.training import data as data_module

    calls = []
    monkeypatch.setattr(data_module, "plant_repeat", lambda window, rng, gap, dna: calls.append((gap, dna)) or window)
    segment = tiny_run(kind).model.segment_len
    for gap_min, draws in ((None, 1), (0, 3)):
        base = tiny_run(kind).data
        mixture = base.mixture if kind == "dna" else {"lm": 1}
        data = dataclasses.replace(base, mixture=mixture, planted_repeats=1.0, repeats_per_window=draws,
                                   repeat_gap_min=gap_min)  # fmt: skip
        calls.clear()
        BatchMaker(tiny_run(kind, data=data, batch_size=4)).train_batch(0, 0)
        assert calls == [(2 * segment if gap_min is None else 0, kind == "dna")] * (4 * draws)
    with pytest.raises(ValueError, match="repeats_per_window"):
        DataConfig(kind="dna", mixture={}, repeats_per_window=0)
    with pytest.raises(ValueError, match="repeat_gap_min"):
        DataConfig(kind="dna", mixture={}, repeat_gap_min=-1)


def test_text_rows_get_exact_planted_repeats():
    data = DataConfig(kind="text", mixture={"lm": 1}, curriculum=[(0, 512)], planted_repeats=1.0, repeat_gap_min=0)
    plain = BatchMaker(tiny_run(data=dataclasses.replace(data, planted_repeats=0.0))).train_batch(0, 0).tokens
    tokens = BatchMaker(tiny_run(data=data)).train_batch(0, 0).tokens
    for row, base in zip(tokens, plain):
        changed = (row != base).nonzero()[:, 0]
        start, end = int(changed[0]), int(changed[-1]) + 1
        copy = row[start:end]  # an exact copy of an earlier stretch of the same row
        assert any(torch.equal(row[s : s + len(copy)], copy) for s in range(start - len(copy) + 1))
