"""`titans score`: per-token log-likelihoods through the streaming state, and what is built on them."""

import gzip
import hashlib
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from titans_cli.cli import main
from titans_cli.errors import UserError
from titans_cli.ingest import IngestRequest, ingest
from titans_cli.models import TitansModel, dna_tokenizer
from titans_cli.readers import open_input
from titans_cli.readers.nucleotides import reverse_complement
from titans_cli.score_command import ScoreRequest, score
from titans_cli.scoring import (
    LN2,
    LineRows,
    ScoredPiece,
    ScoreOptions,
    Scorer,
    WindowTrack,
    length_batches,
)
from titans_cli.variant_scoring import VariantCounts, VariantOptions, score_variants

from conftest import tiny_model

RNG = np.random.default_rng(0)
CHR1 = RNG.choice(list(b"ACGT"), 300).astype(np.uint8).tobytes()
SHORT = b"ACGTNNACGTTG"


def dna_model():
    return tiny_model("mac", vocab_size=9, tokenizer="dna")


def direct_logliks(model, sequence: bytes) -> np.ndarray:
    """log P(x_t | x_<t) from one call on the whole sequence; NaN for the first base and for N."""
    ids = dna_tokenizer().encode(sequence)
    with torch.no_grad():
        logits, _ = model(ids[None])
    logp = torch.log_softmax(logits[0].double(), -1)
    out = np.full(len(ids), np.nan)
    out[1:] = logp[:-1].gather(1, ids[1:, None])[:, 0].numpy()
    out[np.frombuffer(sequence, dtype=np.uint8) == ord("N")] = np.nan
    return out


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "g.fa"
    lines = b"\n".join(CHR1[i : i + 60] for i in range(0, len(CHR1), 60))
    path.write_bytes(b">chr1 first\n" + lines + b"\n>short\n" + SHORT + b"\n>tiny\nAC\n")
    model = dna_model()
    model.save_pretrained(tmp_path / "dna")
    return tmp_path


def scored_records(model, path, **options):
    with open_input([str(path)], kind="dna", piece_size=options.pop("piece", 64)) as reader:
        pieces = list(Scorer(model, None, ScoreOptions(piece_tokens=64, **options)).score(reader))
    records = {}
    for p in pieces:
        records.setdefault(p.record, []).append(p)
    return {k: np.concatenate([p.loglik for p in v]) for k, v in records.items()}


@pytest.mark.parametrize("batch", [1, 32])
def test_pieces_and_batches_equal_one_call_per_record(genome, batch):
    model = dna_model()
    got = scored_records(model, genome / "g.fa", batch_records=batch)
    for name, sequence in (("chr1", CHR1), ("short", SHORT), ("tiny", b"AC")):
        np.testing.assert_allclose(got[name], direct_logliks(model, sequence), atol=1e-5, equal_nan=True)
    assert np.isnan(got["short"][[0, 4, 5]]).all() and not np.isnan(got["short"][[1, 2, 3, 6]]).any()


@pytest.mark.parametrize("batch", [1, 32])  # chr1 streamed alone (both strands held) or read ahead
def test_rc_average_is_the_mean_over_both_strands(genome, batch):
    model = dna_model()
    got = scored_records(model, genome / "g.fa", rc_average=True, batch_records=batch)
    forward = direct_logliks(model, CHR1)
    backward = direct_logliks(model, reverse_complement(CHR1))[::-1]
    expected = np.nanmean(np.stack([forward, backward]), axis=0)
    np.testing.assert_allclose(got["chr1"], expected, atol=1e-5)  # ends: the one strand that scores them


@pytest.fixture
def batch_rows(monkeypatch):
    """The number of rows of every batch the scorer runs."""
    rows = []
    batch_logliks = Scorer._batch_logliks

    def spy(self, sequences):
        rows.append(len(sequences))
        return batch_logliks(self, sequences)

    monkeypatch.setattr(Scorer, "_batch_logliks", spy)
    return rows


def test_length_batches_put_similar_lengths_together():
    assert length_batches([100, 300, 290, 10, 200, 300], most=32) == [[1, 5, 2, 4], [0], [3]]
    assert length_batches([300, 300, 300], most=2) == [[0, 1], [2]]  # input order among equals
    assert length_batches([0, 0, 5], most=32) == [[2], [0, 1]]
    assert length_batches([], most=4) == []


def test_long_records_read_ahead_are_scored_side_by_side(tmp_path, batch_rows):
    """Records of several pieces each, batched (one call of 3 rows and one of 1), scored as one call
    per record would score them, and yielded piece by piece in input order."""
    lengths = {"a": 250, "b": 300, "c": 40, "d": 280}
    records = {name: RNG.choice(list(b"ACGT"), n).astype(np.uint8).tobytes() for name, n in lengths.items()}
    (tmp_path / "r.fa").write_bytes(b"".join(b">%s\n%s\n" % (k.encode(), v) for k, v in records.items()))
    model = dna_model()
    with open_input([str(tmp_path / "r.fa")], kind="dna", piece_size=64) as reader:
        expected = [(p.record, p.offset, p.data) for p in reader]
    with open_input([str(tmp_path / "r.fa")], kind="dna", piece_size=64) as reader:
        pieces = list(Scorer(model, None, ScoreOptions(piece_tokens=64, batch_records=32)).score(reader))
    assert sorted(batch_rows) == [1, 3]
    assert [(p.record, p.offset, p.data) for p in pieces] == expected
    for name, sequence in records.items():
        got = np.concatenate([p.loglik for p in pieces if p.record == name])
        np.testing.assert_allclose(got, direct_logliks(model, sequence), atol=1e-5, equal_nan=True)


def test_a_record_longer_than_the_read_ahead_streams_alone(genome, batch_rows):
    """--batch 2 × --piece 64 reads at most 128 tokens ahead: chr1 (300) streams, the short two batch."""
    model = dna_model()
    got = scored_records(model, genome / "g.fa", batch_records=2)
    assert batch_rows == [1, 1]  # short and tiny, each alone (tiny is under _JOIN of short's length)
    np.testing.assert_allclose(got["chr1"], direct_logliks(model, CHR1), atol=1e-5, equal_nan=True)


def test_carry_and_rc_average_are_refused_together():
    with pytest.raises(ValueError, match="do not go together"):
        Scorer(dna_model(), None, ScoreOptions(carry=True, rc_average=True))


def test_carry_keeps_learning_across_records(genome):
    model = dna_model()
    fresh = scored_records(model, genome / "g.fa")
    carried = scored_records(model, genome / "g.fa", carry=True)
    np.testing.assert_allclose(carried["chr1"], fresh["chr1"], atol=1e-6, equal_nan=True)  # first record alike
    assert np.nanmax(np.abs(carried["short"] - fresh["short"])) > 1e-4
    assert np.isnan(carried["short"][0])  # a record's first base is never scored


def test_table_track_and_per_base_outputs(genome):
    out = genome / "s.parquet"
    request = ScoreRequest([str(genome / "g.fa")], str(out), model=str(genome / "dna"), track=genome / "t.bedgraph",
                           window=100, per_base=genome / "pb.parquet", piece_tokens=64)  # fmt: skip
    summary = score(request)
    rows = pq.read_table(out).to_pylist()
    assert [r["id"] for r in rows] == ["chr1", "short", "tiny"] and summary.records == 3
    direct = direct_logliks(TitansModel.from_pretrained(genome / "dna"), CHR1)
    chr1 = rows[0]
    assert chr1["length"] == 300 and chr1["scored_bases"] == 299
    assert chr1["total_loglik"] == pytest.approx(np.nansum(direct), abs=1e-3)
    assert chr1["bits_per_base"] == pytest.approx(-np.nansum(direct) / LN2 / 299, rel=1e-6)
    assert chr1["perplexity"] == pytest.approx(math.exp(-chr1["mean_loglik"]))
    assert rows[1]["scored_bases"] == len(SHORT) - 3
    assert chr1["sha256"] == hashlib.sha256(CHR1).hexdigest()
    track = (genome / "t.bedgraph").read_text().splitlines()
    assert track[0].startswith("track type=bedGraph")
    chrom, start, end, value = track[2].split("\t")
    assert (chrom, start, end) == ("chr1", "100", "200")
    assert float(value) == pytest.approx(-np.nanmean(direct[100:200]) / LN2, rel=1e-4)
    assert [line.split("\t")[:3] for line in track[1:]][-2:] == [["short", "0", "12"], ["tiny", "0", "2"]]
    per_base = pq.read_table(genome / "pb.parquet").to_pydict()
    assert len(per_base["position"]) == 300 + len(SHORT) + 2
    assert per_base["loglik"][0] is None and per_base["loglik"][1] == pytest.approx(direct[1], abs=1e-5)


def test_tsv_and_stdout(genome, capsys):
    assert main(["score", str(genome / "g.fa"), "--model", str(genome / "dna"), "-o", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:3] == ["id", "source", "length"] and len(lines) == 4
    assert main(["score", str(genome / "g.fa"), "--model", str(genome / "dna"), "-o", str(genome / "s.tsv"),
                 "--json"]) == 0  # fmt: skip
    assert '"bits_per_base"' in capsys.readouterr().out
    assert (genome / "s.tsv").read_text().splitlines()[1].startswith("chr1\t")
    assert main(["score", str(genome / "g.fa"), "--model", str(genome / "dna"), "-o", "x.csv"]) == 2


def test_memory_mode_reports_both_scores(genome):
    ingest(IngestRequest([str(genome / "g.fa")], genome / "mem", model=str(genome / "dna")))
    out = genome / "m.parquet"
    score(ScoreRequest([str(genome / "g.fa")], str(out), memory=genome / "mem", piece_tokens=64))
    plain = genome / "p.parquet"
    score(ScoreRequest([str(genome / "g.fa")], str(plain), model=str(genome / "dna"), piece_tokens=64))
    with_memory, without = pq.read_table(out).to_pylist(), pq.read_table(plain).to_pylist()
    for a, b in zip(with_memory, without):
        assert a["bits_per_base_without_memory"] == pytest.approx(b["bits_per_base"], abs=1e-9)
        assert a["memory_gain_bits"] == pytest.approx(b["bits_per_base"] - a["bits_per_base"], abs=1e-9)
    assert with_memory[0]["bits_per_base"] != pytest.approx(without[0]["bits_per_base"], abs=1e-6)


def test_text_rows_are_lines(tmp_path):
    model = tiny_model("mac")
    lines = [b"first line\n", b"second, longer line\n", b"no newline at the end"]
    text = b"".join(lines)
    rows = LineRows()
    done = []
    for start in range(0, len(text), 7):  # pieces that cut lines anywhere
        part = text[start : start + 7]
        piece = ScoredPiece("f", "f", start, part, np.full(len(part), -1.0), start + 7 >= len(text))
        done += rows.add(piece)
    assert [t.name for t in done] == ["f:1", "f:2", "f:3"] and [t.length for t in done] == [len(x) for x in lines]
    (tmp_path / "log.txt").write_bytes(text)
    model.save_pretrained(tmp_path / "m")
    score(ScoreRequest([str(tmp_path / "log.txt")], str(tmp_path / "s.parquet"), model=str(tmp_path / "m"),
                       kind="text"))  # fmt: skip
    table = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert [r["id"] for r in table] == [f"{tmp_path / 'log.txt'}:{i}" for i in (1, 2, 3)]
    assert [r["length"] for r in table] == [len(x) for x in lines]
    assert sum(r["scored_bytes"] for r in table) == len(text) - 1


def test_window_track_cuts_on_the_record_grid():
    track = WindowTrack(4)
    values = -np.arange(1.0, 11.0)
    rows = []
    for start in (0, 3, 7):  # pieces of 3, 4 and 3 positions
        end = min(start + 4 if start else 3, 10)
        rows += track.add(ScoredPiece("s", "r", start, b"A" * (end - start), values[start:end], end == 10))
    assert [(a, b) for _, a, b, _ in rows] == [(0, 4), (4, 8), (8, 10)]
    assert rows[1][3] == pytest.approx(np.mean(np.arange(5.0, 9.0)) / LN2)


def test_model_and_input_kinds_must_agree(genome, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("plain text\n")
    assert main(["score", str(tmp_path / "t.txt"), "--model", str(genome / "dna"), "-o", "-"]) == 2
    assert "reads dna, but the input is text" in capsys.readouterr().err
    ingest(IngestRequest([str(genome / "g.fa")], genome / "mem", model=str(genome / "dna")))
    assert main(["score", str(tmp_path / "t.txt"), "--memory", str(genome / "mem"), "-o", "-"]) == 2
    assert f"{genome / 'mem'} holds dna read by" in " ".join(capsys.readouterr().err.split())


def test_a_memory_whose_model_moved_points_at_model_dir(genome, capsys):
    ingest(IngestRequest([str(genome / "g.fa")], genome / "mem", model=str(genome / "dna")))
    (genome / "dna").rename(genome / "moved")
    args = ["score", str(genome / "g.fa"), "--memory", str(genome / "mem"), "-o", "-"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no longer there" in err and "--model DIR" in err
    assert main([*args, "--model", str(genome / "moved")]) == 0


# ---- variants -----------------------------------------------------------------------------------------------


def write_vcf(path, lines, compress=False):
    body = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(l + "\n" for l in lines)
    if compress:
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body)
    return path


def test_variant_delta_is_alt_window_minus_ref_window(genome):
    model = dna_model()
    ref_base = chr(CHR1[149])
    alt = "A" if ref_base != "A" else "C"
    deletion = CHR1[199:202].decode()
    vcf = write_vcf(genome / "v.vcf.gz", [f"chr1\t150\trs1\t{ref_base}\t{alt}\t.\t.\t.",
                                          f"chr1\t200\t.\t{deletion}\t{deletion[0]},<DEL>,*\t.\t.\t."],
                    compress=True)  # fmt: skip
    counts = VariantCounts()
    rows = list(score_variants(model, vcf, str(genome / "g.fa"), VariantOptions(flank=40), counts))
    assert [(r["POS"], r["ALT"]) for r in rows] == [(150, alt), (200, deletion[0])] and counts.skipped_allele == 2
    left, right = CHR1[109:149], CHR1[150:190]
    ref_ll = np.nansum(direct_logliks(model, left + ref_base.encode() + right))
    alt_ll = np.nansum(direct_logliks(model, left + alt.encode() + right))
    assert rows[0]["delta"] == pytest.approx(alt_ll - ref_ll, abs=1e-4)


def test_variant_deletion_and_both_strands(genome):
    model = dna_model()
    deletion = CHR1[199:204].decode()  # a 4-bp deletion after the anchor base
    vcf = write_vcf(genome / "v.vcf", [f"chr1\t200\t.\t{deletion}\t{deletion[0]}\t.\t.\t."])
    options = VariantOptions(flank=30, rc_average=True)
    (row,) = score_variants(model, vcf, str(genome / "g.fa"), options, VariantCounts())
    left, right = CHR1[169:199], CHR1[204:234]
    ref, alt = left + deletion.encode() + right, left + deletion[0].encode() + right
    forward = np.nansum(direct_logliks(model, alt)) - np.nansum(direct_logliks(model, ref))
    reverse = (np.nansum(direct_logliks(model, reverse_complement(alt)))
               - np.nansum(direct_logliks(model, reverse_complement(ref))))  # fmt: skip
    assert row["delta_forward"] == pytest.approx(forward, abs=1e-4)
    assert row["delta_reverse"] == pytest.approx(reverse, abs=1e-4)
    assert row["delta"] == pytest.approx((forward + reverse) / 2, abs=1e-4)


def test_window_is_clipped_at_the_chromosome_edge(genome):
    model = dna_model()
    vcf = write_vcf(genome / "v.vcf", [f"chr1\t3\t.\t{chr(CHR1[2])}\tN\t.\t.\t."])
    (row,) = score_variants(model, vcf, str(genome / "g.fa"), VariantOptions(flank=10), VariantCounts())
    window = CHR1[:13]
    assert row["ref_loglik"] == pytest.approx(np.nansum(direct_logliks(model, window)), abs=1e-4)


def test_vcf_variants_of_every_kind(genome):
    """bgzip, CRLF line ends, lower case, '.' and symbolic ALTs, two scorable ALTs, a 50-bp deletion."""
    from Bio import bgzf

    model = dna_model()
    long_del = CHR1[99:150].decode()  # anchor + 50 bases: the longest deletion scored
    too_long = CHR1[99:151].decode()
    base = chr(CHR1[49])
    lines = [f"chr1\t50\tmulti\t{base.lower()}\t{','.join('acgt'.replace(base.lower(), '')[:2])}\t.\t.\t.",
             f"chr1\t60\tnone\t{chr(CHR1[59])}\t.\t.\t.\t.",
             f"chr1\t100\tdel50\t{long_del}\t{long_del[0]}\t.\t.\t.",
             f"chr1\t100\tdel51\t{too_long}\t{too_long[0]}\t.\t.\t."]  # fmt: skip
    body = "##fileformat=VCFv4.2\r\n#CHROM\tPOS\tID\tREF\tALT\r\n" + "".join(l + "\r\n" for l in lines)
    path = genome / "v.vcf.gz"
    with bgzf.BgzfWriter(str(path), "wb") as out:
        out.write(body.encode())
    counts = VariantCounts()
    rows = list(score_variants(model, path, str(genome / "g.fa"), VariantOptions(flank=20), counts))
    assert [(r["ID"], r["ALT"]) for r in rows] == [("multi", a) for a in "ACGT".replace(base, "")[:2]] + [
        ("del50", long_del[0])
    ]
    assert rows[0]["REF"] == base and counts.skipped_allele == 2 and counts.scored == 3


def test_a_long_user_error_is_one_line(genome, capsys):
    vcf = write_vcf(genome / ("a_rather_long_file_name_" * 4 + ".vcf"), ["chr1\t10\t.\tQ\tG\t.\t.\t."])
    args = ["score", "--variants", str(vcf), "--reference", str(genome / "g.fa"), "--model", str(genome / "dna"),
            "-o", str(genome / "v.tsv")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "must be bases" in err
    assert main([*args, "--window", "50"]) == 2
    assert "--window do not apply to --variants" in capsys.readouterr().err
    assert not (genome / "v.tsv").exists() and not (genome / "v.tsv.partial").exists()


def test_per_base_text_keeps_raw_bytes(tmp_path):
    model = tiny_model("mac")
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "t.txt").write_bytes("café\x00\n".encode())
    score(ScoreRequest([str(tmp_path / "t.txt")], str(tmp_path / "s.tsv"), model=str(tmp_path / "m"), kind="text",
                       per_base=tmp_path / "pb.parquet"))  # fmt: skip
    bases = pq.read_table(tmp_path / "pb.parquet").column("base").to_pylist()
    assert b"".join(bases) == "café\x00\n".encode()


def test_ref_mismatch_is_an_error_unless_skipped(genome, capsys):
    wrong = "A" if chr(CHR1[9]) != "A" else "C"
    vcf = write_vcf(genome / "v.vcf", [f"chr1\t10\tbad1\t{wrong}\tG\t.\t.\t.", "chrX\t5\t.\tA\tG\t.\t.\t."])
    args = ["score", "--variants", str(vcf), "--reference", str(genome / "g.fa"), "--model", str(genome / "dna"),
            "-o", "-", "--flank", "8"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "v.vcf:3" in err and "chr1:10" in err and "--skip-mismatch" in err
    assert main([*args, "--skip-mismatch"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["CHROM\tPOS\tID\tREF\tALT\tref_loglik\talt_loglik\tdelta"]
    assert "2 mismatches" in " ".join(captured.err.split())


@pytest.mark.parametrize(("line", "message"), [
    ("chr1\t10\t.\tA", "a VCF data line needs at least 5"),
    ("chr1\tten\t.\tA\tG", "POS 'ten' is not a whole number"),
    ("chr1\t10\t.\tQ\tG", "REF 'Q' must be bases"),
])  # fmt: skip
def test_malformed_vcf_line_is_named(genome, line, message):
    vcf = write_vcf(genome / "v.vcf", [f"chr1\t5\t.\t{chr(CHR1[4])}\tN\t.\t.\t.", line])
    with pytest.raises(UserError, match=rf"v.vcf:4: {message}"):
        list(score_variants(dna_model(), vcf, str(genome / "g.fa"), VariantOptions(), VariantCounts()))


@pytest.mark.parametrize("flag", ["--out", "--track", "--per-base"])
def test_an_unwritable_output_fails_before_scoring(genome, capsys, monkeypatch, flag):
    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started before the outputs were checked")

    monkeypatch.setattr("titans_cli.score_command.Scorer", no_scoring)
    args = ["score", str(genome / "g.fa"), "--model", str(genome / "dna"), "-o", str(genome / "s.tsv")]
    missing = str(genome / "no_such_dir" / "x.parquet")
    assert main([*args, flag, missing]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert missing in err and flag in err and "No such file or directory" in err
    (genome / "d.parquet").mkdir()
    assert main([*args, flag, str(genome / "d.parquet")]) == 2
    assert "names a directory" in capsys.readouterr().err
    assert not list(genome.glob("*.partial")) and not (genome / "s.tsv").exists()


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "not a device"), ("cuda", "no CUDA GPU"), ("cuda:3", "no CUDA GPU"), ("meta", "unsupported device"),
])  # fmt: skip
def test_a_device_this_machine_lacks_is_a_user_error(genome, capsys, monkeypatch, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["score", str(genome / "g.fa"), "--model", str(genome / "dna"), "-o", "-", "--device", device]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and f"--device {device}" in err.replace("'", "")


def test_reference_lookup_rescans_only_for_names_the_file_has(genome, monkeypatch):
    from titans_cli import variant_scoring

    opened = []
    real = variant_scoring.open_input
    monkeypatch.setattr(variant_scoring, "open_input", lambda *a, **k: opened.append(1) or real(*a, **k))
    reference = variant_scoring.ReferenceGenome(str(genome / "g.fa"))
    assert reference.sequence("short") == SHORT and len(opened) == 1
    assert reference.sequence("chr1") == CHR1 and len(opened) == 2  # behind the reader: one rescan
    assert reference.sequence("chrX") is None and len(opened) == 2  # the first reader read every name
    assert reference.sequence("chrY") is None and reference.sequence("chrX") is None and len(opened) == 2
    assert reference.sequence("tiny") == b"AC"
    reference.close()


def test_an_empty_table_keeps_its_column_types(genome):
    vcf = write_vcf(genome / "v.vcf", [])
    out = genome / "v.parquet"
    assert main(["score", "--variants", str(vcf), "--reference", str(genome / "g.fa"), "--model",
                 str(genome / "dna"), "-o", str(out)]) == 0  # fmt: skip
    schema = pq.read_schema(out)
    assert schema.field("POS").type == "int64" and schema.field("delta").type == "double"
