"""`titans ingest` / `info` / the memory file: durability, exact resume, refusals."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from titans_cli.cli import main
from titans_cli.errors import UserError
from titans_cli.ingest import IngestRequest, ingest
from titans_cli.memory_info import describe_memory
from titans_cli.memory_store import MemoryStore
from titans_cli.models import TitansModel

from conftest import tiny_config

BLOCK = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny-text"
    TitansModel(tiny_config("mac", n_layers=1, name="tiny-text")).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dna_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny-dna"
    TitansModel(tiny_config("lmm", n_layers=1, vocab_size=9, tokenizer="dna", name="tiny-dna")).save_pretrained(path)
    return path


def write_texts(folder: Path, sizes: list[int], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for i, size in enumerate(sizes):
        p = folder / f"part{i}.txt"
        p.write_bytes(bytes(rng.choice(b"abcdefgh \n") for _ in range(size)))
        paths.append(str(p))
    return paths


def run(inputs, memory, model, **kw):
    return ingest(IngestRequest(list(inputs), Path(memory), str(model), block_tokens=BLOCK, **kw))


def digest(memory) -> str:
    return describe_memory(memory)["state_digest"]


def test_ingest_then_info_reports_what_was_read(tmp_path, model_dir, capsys):
    inputs = write_texts(tmp_path, [300, 200])
    report = run(inputs, tmp_path / "mem", model_dir)
    assert report.tokens_added == 500 and not report.interrupted
    assert main(["info", str(tmp_path / "mem"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tokens"] == 500  # text: one token per input byte
    assert info["model"]["name"] == "tiny-text"
    assert [s["path"] for s in info["sources"]] == inputs
    assert all(s["complete"] and s["tokens"] == Path(s["path"]).stat().st_size for s in info["sources"])
    assert len(info["state_digest"]) == 64
    assert info["surprise_profile"]


def test_ingest_is_deterministic(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [400])
    run(inputs, tmp_path / "a", model_dir)
    run(inputs, tmp_path / "b", model_dir)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_appending_equals_one_ingest(tmp_path, model_dir):
    a, b = write_texts(tmp_path, [250, 333])  # neither ends on a block boundary
    run([a, b], tmp_path / "together", model_dir)
    run([a], tmp_path / "appended", model_dir)
    report = ingest(IngestRequest([b], tmp_path / "appended"))  # the memory names its own model
    assert report.total_tokens == 583
    assert digest(tmp_path / "together") == digest(tmp_path / "appended")


@pytest.mark.parametrize("sizes", [[300, 270, 150], [100, 300]])  # the second stops in the last source
def test_interrupt_and_resume_is_bit_identical(tmp_path, model_dir, sizes):
    inputs = write_texts(tmp_path, sizes)
    run(inputs, tmp_path / "straight", model_dir)
    calls = {"n": 0}

    def stop_after_three_blocks():
        calls["n"] += 1
        return calls["n"] == 3

    report = run(inputs, tmp_path / "cut", model_dir, should_stop=stop_after_three_blocks)
    assert report.interrupted and report.total_tokens == 3 * BLOCK
    with pytest.raises(UserError, match="--resume"):
        run(inputs, tmp_path / "cut", model_dir)
    resumed = run(inputs, tmp_path / "cut", model_dir, resume=True)
    assert not resumed.interrupted and resumed.total_tokens == sum(sizes)
    assert digest(tmp_path / "cut") == digest(tmp_path / "straight")


def test_interrupt_exactly_at_a_source_boundary_resumes_at_the_next_source(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [2 * BLOCK, 3 * BLOCK, 50])
    run(inputs, tmp_path / "straight", model_dir)
    calls = {"n": 0}

    def stop_after_two_blocks():
        calls["n"] += 1
        return calls["n"] == 2

    run(inputs, tmp_path / "cut", model_dir, should_stop=stop_after_two_blocks)
    sources = MemoryStore(tmp_path / "cut").load().sources
    assert [s.complete for s in sources] == [True, False, False]
    run(inputs, tmp_path / "cut", model_dir, resume=True)
    assert digest(tmp_path / "cut") == digest(tmp_path / "straight")


def test_resume_refuses_a_changed_input(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [300, 300])
    run(inputs, tmp_path / "mem", model_dir, should_stop=lambda: True)
    data = bytearray(Path(inputs[0]).read_bytes())
    data[10] ^= 1  # same size, one bit different, inside the consumed prefix
    Path(inputs[0]).write_bytes(bytes(data))
    with pytest.raises(UserError, match="changed since it was ingested"):
        run(inputs, tmp_path / "mem", model_dir, resume=True)


def test_reingesting_needs_force(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [100])
    run(inputs, tmp_path / "mem", model_dir)
    with pytest.raises(UserError, match="--force"):
        run(inputs, tmp_path / "mem", model_dir)
    assert run(inputs, tmp_path / "mem", model_dir, force=True).total_tokens == 200


def test_memory_of_another_model_is_refused(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [100])
    run(inputs, tmp_path / "mem", model_dir)
    other = tmp_path / "other"
    torch.manual_seed(1)
    TitansModel(tiny_config("mac", n_layers=1, name="tiny-text")).save_pretrained(other)
    with pytest.raises(UserError, match="was made by model"):
        run(write_texts(tmp_path, [50], seed=5), tmp_path / "mem", other)


def test_unknown_model_and_wrong_kind(tmp_path, model_dir, dna_model_dir):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\nACGTACGTNNacgt\n")
    with pytest.raises(UserError, match="unknown model 'no-such-model'"):
        ingest(IngestRequest([str(fasta)], tmp_path / "m0", "no-such-model"))
    with pytest.raises(UserError, match="--kind text"):
        run([str(fasta)], tmp_path / "m1", model_dir)
    assert run([str(fasta)], tmp_path / "m2", model_dir, kind="text").total_tokens == fasta.stat().st_size
    report = run([str(fasta)], tmp_path / "m3", dna_model_dir)
    assert report.total_tokens == 14  # bases, not bytes


def commit_twice(tmp_path, model_dir) -> MemoryStore:
    a, b = write_texts(tmp_path, [200, 150])
    run([a], tmp_path / "mem", model_dir)
    run([b], tmp_path / "mem", model_dir)
    store = MemoryStore(tmp_path / "mem")
    assert len(store.commits()) == 2
    return store


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_state_is_refused_and_previous_commit_survives(tmp_path, model_dir, damage):
    store = commit_twice(tmp_path, model_dir)
    previous_tokens = store.load(store.commits()[0]).tokens
    state = store.path / "commits" / f"{store.commits()[-1]:06d}" / "state.parquet"
    data = bytearray(state.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"is corrupt.*previous commit 1 is intact"):
        store.load()
    assert main(["info", str(store.path)]) == 2
    assert main(["rollback", str(store.path)]) == 0
    assert store.load().tokens == previous_tokens == 200


def test_missing_pointer_is_refused_then_rolled_back(tmp_path, model_dir):
    store = commit_twice(tmp_path, model_dir)
    store.pointer.unlink()
    with pytest.raises(UserError, match="CURRENT is missing"):
        store.load()
    store.rollback()
    assert store.load().tokens == 350


def test_newer_format_is_refused(tmp_path, model_dir):
    store = commit_twice(tmp_path, model_dir)
    pointer = json.loads(store.pointer.read_text())
    pointer["version"] = 99
    store.pointer.write_text(json.dumps(pointer))
    with pytest.raises(UserError, match="newer than this titans reads"):
        store.load()


def test_state_is_readable_with_plain_pyarrow(tmp_path, model_dir):
    import numpy as np
    import pyarrow.parquet as pq

    store = commit_twice(tmp_path, model_dir)
    pointer = json.loads(store.pointer.read_text())
    table = pq.read_table(store.path / "commits" / f"{pointer['commit']:06d}" / "state.parquet")
    rows = {r["name"]: r for r in table.to_pylist()}
    w0 = rows["layers.0.mem.w0"]
    array = np.frombuffer(w0["data"], dtype=w0["dtype"]).reshape(w0["shape"])
    assert np.array_equal(array, store.load().state["layers.0.mem.w0"].numpy())


def test_cli_user_errors_exit_2_without_traceback(tmp_path, model_dir, capsys):
    assert main(["ingest", str(tmp_path / "missing.txt"), "-m", str(tmp_path / "mem"), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "missing.txt" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "nothing")]) == 2


def cli(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "titans_cli.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # fmt: skip


def ingest_args(inputs, memory, model_dir):
    return ["ingest", *inputs, "-m", str(memory), "--model", str(model_dir), "--block-tokens", str(BLOCK),
            "--checkpoint-every", str(BLOCK), "-q"]  # fmt: skip


def next_args(inputs, memory, model_dir) -> list[str] | None:
    """The command that carries on from whatever a killed ingest left behind (None: it had finished)."""
    store = MemoryStore(memory)
    if not store.exists():
        return ingest_args(inputs, memory, model_dir)
    if all(s.complete for s in store.load().sources):
        return None
    return [*ingest_args(inputs, memory, model_dir), "--resume"]


def test_ctrl_c_commits_and_exits_130(tmp_path, model_dir):
    inputs = write_texts(tmp_path, [30000, 20000])
    memory = tmp_path / "mem"
    proc = cli(*ingest_args(inputs, memory, model_dir))
    deadline = time.monotonic() + 120
    while not MemoryStore(memory).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # interrupt once the first commit is there: mid-stream, whatever the machine's speed
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err.decode()
    assert b"--resume" in err
    assert not all(s.complete for s in MemoryStore(memory).load().sources)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_instants_then_resume_is_bit_identical(tmp_path, model_dir, seed):
    inputs = write_texts(tmp_path, [1500, 900, 1100], seed=seed)
    reference = tmp_path / "reference"
    proc = cli(*ingest_args(inputs, reference, model_dir))  # same process settings as the killed runs
    assert proc.wait(timeout=600) == 0
    memory = tmp_path / "killed"
    rng = random.Random(seed)
    for _ in range(2):  # kill twice at random instants (python and torch take ~2 s to start)
        if (args := next_args(inputs, memory, model_dir)) is None:
            break
        proc = cli(*args)
        time.sleep(rng.uniform(2.5, 6.0))
        proc.kill()
        proc.wait()
    if (args := next_args(inputs, memory, model_dir)) is not None:
        proc = cli(*args)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    assert digest(memory) == digest(reference)
