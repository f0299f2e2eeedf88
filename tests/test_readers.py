"""readers/: streaming text and sequence input (issue #3). Every input is generated in tmp_path."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import sys
import threading
import tracemalloc
import warnings
from pathlib import Path

import pytest
import zstandard
from Bio import SeqIO, bgzf
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from titans_cli.errors import UserError
from titans_cli.readers import (
    InputError,
    Piece,
    ReadPosition,
    SkippedFilesWarning,
    file_sha256,
    open_input,
)
from titans_cli.readers import sources as sources_module
from titans_cli.readers.nucleotides import reverse_complement

# What the reader must turn each sequence letter into (spec section 5; U is read as T).
FOLDED = str.maketrans("acgtnRYSWKMBDHVryswkmbdhvUu", "ACGTNNNNNNNNNNNNNNNNNNNNNTT")


def folded(sequence: str) -> bytes:
    return sequence.translate(FOLDED).encode()


def read(paths, **options) -> list[Piece]:
    with open_input(paths, **options) as reader:
        return list(reader)


def records(pieces: list[Piece]) -> list[tuple[str | None, bytes]]:
    """Join pieces back into (record id, sequence) per record, checking the piece flags on the way."""
    joined: list[tuple[str | None, bytearray]] = []
    key = None
    for piece in pieces:
        if piece.record_start:
            assert piece.offset == 0
            joined.append((piece.record, bytearray()))
            key = (piece.source_index, piece.record_index)
        assert key == (piece.source_index, piece.record_index)
        assert piece.offset == len(joined[-1][1])
        joined[-1][1].extend(piece.data)
    return [(name, bytes(data)) for name, data in joined]


def random_sequence(rng: random.Random, length: int, alphabet: str = "ACGTacgtNnRYU") -> str:
    return "".join(rng.choices(alphabet, k=length))


def write_fasta(path: Path, entries: list[tuple[str, str]], rng: random.Random, newline: str = "\n") -> None:
    with open(path, "w", newline="") as handle:
        for name, sequence in entries:
            width = rng.randint(1, 120)
            lines = [sequence[i : i + width] for i in range(0, len(sequence), width)]
            handle.write(f">{name} some description{newline}" + newline.join(lines) + newline)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture(params=[None, 7, 1000])
def block_size(request, monkeypatch) -> int | None:
    """Tiny decompressed blocks put headers, CRLFs and '>' across block boundaries."""
    if request.param:
        monkeypatch.setattr(sources_module, "BLOCK_SIZE", request.param)
    return request.param


def sample_fasta(tmp_path: Path, rng: random.Random, records_: int = 6) -> tuple[Path, list[tuple[str, str]]]:
    entries = [(f"seq{i}", random_sequence(rng, rng.randint(1, 3000))) for i in range(records_)]
    path = tmp_path / "sample.fa"
    write_fasta(path, entries, rng)
    return path, entries


# ---------------------------------------------------------------------------------------------------------
# Round trips against Biopython


@pytest.mark.parametrize("piece_size", [1, 5, 64, 1 << 20])
def test_fasta_round_trip_matches_biopython(tmp_path, rng, block_size, piece_size):
    path, _ = sample_fasta(tmp_path, rng)
    pieces = read(path, piece_size=piece_size)
    expected = [(r.id, folded(str(r.seq))) for r in SeqIO.parse(path, "fasta")]
    assert records(pieces) == expected
    assert all(0 < len(p.data) <= piece_size for p in pieces)
    # pieces sit on the piece-size grid, so restarting at a piece boundary reproduces them
    assert all(p.offset % piece_size == 0 for p in pieces)
    assert [p.record_end for p in pieces].count(True) == len(expected)
    assert [p.source_end for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert all(set(p.data) <= set(b"ACGTN") for p in pieces)


def test_fasta_with_crlf_and_blank_lines_reads_like_lf(tmp_path, rng, block_size):
    entries = [("a", random_sequence(rng, 500)), ("b", random_sequence(rng, 77))]
    write_fasta(tmp_path / "lf.fa", entries, random.Random(5))
    write_fasta(tmp_path / "crlf.fa", entries, random.Random(5), newline="\r\n")
    (tmp_path / "blank.fa").write_bytes(b"\n\n" + (tmp_path / "crlf.fa").read_bytes().replace(b"\r\n", b"\r\n\r\n"))
    lf = records(read(tmp_path / "lf.fa"))
    assert lf == [("a", folded(entries[0][1])), ("b", folded(entries[1][1]))]
    assert records(read(tmp_path / "crlf.fa")) == lf
    assert records(read(tmp_path / "blank.fa")) == lf


def test_reverse_complement():
    assert reverse_complement(b"AACGTN") == b"NACGTT"
    assert reverse_complement(b"acGT") == b"ACgt"
    assert reverse_complement(reverse_complement(b"GATTACA")) == b"GATTACA"


def test_folding_rules(tmp_path):
    (tmp_path / "x.fa").write_text(">x\nacgtACGT\nRYSWKMBDHVN ryswkmbdhvn\nUu\t\n")
    assert records(read(tmp_path / "x.fa")) == [("x", b"ACGTACGT" + b"N" * 22 + b"TT")]


def test_fastq_round_trip_matches_biopython(tmp_path, rng, block_size):
    path = tmp_path / "reads.fq"
    with open(path, "w") as handle:
        for i in range(50):
            sequence = random_sequence(rng, rng.randint(1, 300), "ACGTN")
            quality = "".join(rng.choices("!#+5@FIJ~", k=len(sequence)))
            handle.write(f"@read{i} extra\n{sequence}\n+\n{quality}\n")
    expected = [(r.id, str(r.seq).encode()) for r in SeqIO.parse(path, "fastq")]
    assert records(read(path, piece_size=100)) == expected


def test_multiline_fastq_with_quality_lines_starting_with_at(tmp_path):
    (tmp_path / "m.fastq").write_text("@r1\nACGT\nAC\n+r1\n@@@@\n@@\n@r2\nGG\n+\n+@\n")
    assert records(read(tmp_path / "m.fastq")) == [("r1", b"ACGTAC"), ("r2", b"GG")]


def sequence_records(rng: random.Random) -> list[SeqRecord]:
    made = []
    for i in range(3):
        record = SeqRecord(Seq(random_sequence(rng, rng.randint(1, 2000), "ACGTacgtN")), id=f"ACC{i}.1")
        record.name = f"LOC{i}"
        record.description = f"record {i}"
        record.annotations["molecule_type"] = "DNA"
        made.append(record)
    return made


@pytest.mark.parametrize(("fmt", "name"), [("genbank", "x.gb"), ("embl", "x.embl")])
def test_genbank_and_embl_round_trip_matches_biopython(tmp_path, rng, fmt, name):
    path = tmp_path / name
    SeqIO.write(sequence_records(rng), path, fmt)
    expected = [(r.id, folded(str(r.seq))) for r in SeqIO.parse(path, fmt)]
    pieces = read(path, piece_size=333)
    assert records(pieces) == expected
    # sniffed from content too
    renamed = tmp_path / "noext"
    renamed.write_bytes(path.read_bytes())
    assert records(read(renamed)) == expected


def test_genbank_invalid_character_names_the_line(tmp_path, rng):
    path = tmp_path / "bad.gb"
    record = SeqRecord(Seq("ACGT" * 40), id="BAD1.1", name="BAD1", annotations={"molecule_type": "DNA"})
    SeqIO.write([record], path, "genbank")
    text = path.read_text().splitlines()
    origin = next(i for i, line in enumerate(text) if line.startswith("ORIGIN"))
    text[origin + 2] = text[origin + 2][:12] + "-" + text[origin + 2][13:]  # a gap in the second sequence line
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=rf"bad.gb, record 'BAD1.1', line {origin + 3}: .*'-'"):
        read(path)


# ---------------------------------------------------------------------------------------------------------
# Compression, hashes, sources


def compress(data: bytes, method: str, path: Path) -> None:
    if method == "gzip":
        path.write_bytes(gzip.compress(data))
    elif method == "bgzf":
        with bgzf.BgzfWriter(str(path), "wb") as handle:
            handle.write(data)
    elif method == "bzip2":
        path.write_bytes(bz2.compress(data))
    elif method == "xz":
        path.write_bytes(lzma.compress(data))
    elif method == "zstd":  # two frames: readers must go on across frames
        half = len(data) // 2
        compressor = zstandard.ZstdCompressor()
        path.write_bytes(compressor.compress(data[:half]) + compressor.compress(data[half:]))
    else:
        raise AssertionError(method)


METHODS = ["gzip", "bgzf", "bzip2", "xz", "zstd"]


@pytest.mark.parametrize("method", METHODS)
def test_compressed_fasta_reads_like_plain_and_hashes_raw_bytes(tmp_path, rng, method):
    plain, _ = sample_fasta(tmp_path, rng, records_=30)
    path = tmp_path / "packed.fa.anything"  # the name says nothing: magic bytes decide
    compress(plain.read_bytes(), method, path)
    with open_input(path, piece_size=1000) as reader:
        pieces = list(reader)
        assert reader.kind == "dna"
        [info] = reader.sources
    assert records(pieces) == records(read(plain, piece_size=1000))
    raw = path.read_bytes()
    assert (info.size, info.sha256, info.complete) == (len(raw), hashlib.sha256(raw).hexdigest(), True)
    assert info.compression == method
    assert info.format == "fasta"
    assert file_sha256(path) == info.sha256


@pytest.mark.parametrize("method", METHODS)
def test_truncated_compressed_input_is_an_error(tmp_path, rng, method):
    plain, _ = sample_fasta(tmp_path, rng, records_=40)
    path = tmp_path / "cut.fa.gz"
    compress(plain.read_bytes(), method, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"cut\.fa\.gz: .*(ends|truncated|cut short|corrupt)"):
        read(path)


def test_bgzf_cut_at_a_block_boundary_is_an_error(tmp_path, rng):
    plain, _ = sample_fasta(tmp_path, rng)
    path = tmp_path / "x.fa.bgz"
    compress(plain.read_bytes(), "bgzf", path)
    data = path.read_bytes()
    assert data.endswith(bgzf._bgzf_eof)
    path.write_bytes(data[: -len(bgzf._bgzf_eof)])  # every block whole, end-of-file block gone
    with pytest.raises(InputError, match="end-of-file block"):
        read(path)


def test_text_reads_any_bytes_and_hashes(tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    with open_input(path, kind="text", piece_size=4096) as reader:
        pieces = list(reader)
        assert reader.kind == "text"
        assert reader.total_bytes == len(data)
        assert reader.bytes_read == len(data)
        [info] = reader.sources
    assert b"".join(p.data for p in pieces) == data
    assert all(p.record is None and p.record_index == 0 for p in pieces)
    assert pieces[0].record_start and pieces[-1].record_end and pieces[-1].source_end
    assert info.sha256 == hashlib.sha256(data).hexdigest() == file_sha256(path)
    assert file_sha256(path, size=1000) == hashlib.sha256(data[:1000]).hexdigest()


def test_sources_report_progress_while_reading(tmp_path):
    for name in "ab":
        (tmp_path / f"{name}.txt").write_bytes(name.encode() * 10_000)
    with open_input([tmp_path / "a.txt", tmp_path / "b.txt"], piece_size=1000) as reader:
        first = next(reader)
        [partial] = reader.sources
        assert first.data == b"a" * 1000
        assert not partial.complete and partial.path.endswith("a.txt")
        rest = list(reader)
        assert [s.complete for s in reader.sources] == [True, True]
        assert reader.position == ReadPosition(2, 0, 0)
    assert len(rest) == 19


def test_directory_order_hidden_and_binary_files(tmp_path):
    root = tmp_path / "corpus"
    (root / "b" / ".hidden_dir").mkdir(parents=True)
    (root / "a").mkdir()
    files = {
        "z.txt": b"zed",
        "a/2.txt": b"two",
        "a/10.txt": b"ten",
        "b/x.md": b"ex",
        "b/.secret": b"hidden",
        "b/.hidden_dir/y.txt": b"hidden",
        "b/image.png": b"\x89PNG\x00\x00binary",
        "b/empty.txt": b"",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "c.txt.gz").write_bytes(gzip.compress(b"unzipped"))
    with pytest.warns(SkippedFilesWarning, match=r"skipped 2 file.*empty\.txt \(empty\).*image\.png \(binary\)"):
        reader = open_input(root, kind="text")
    with reader:
        pieces = list(reader)
    assert [Path(p.source).relative_to(root).as_posix() for p in pieces] == [
        "a/10.txt",
        "a/2.txt",
        "b/x.md",
        "c.txt.gz",
        "z.txt",
    ]
    assert [p.data for p in pieces] == [b"ten", b"two", b"ex", b"unzipped", b"zed"]
    assert [p.source_index for p in pieces] == [0, 1, 2, 3, 4]
    assert [s.path for s in reader.skipped] == [str(root / "b/empty.txt"), str(root / "b/image.png")]


def test_binary_file_given_explicitly_is_read_as_text(tmp_path):
    (tmp_path / "raw.bin").write_bytes(b"\x00\x01\x02")
    assert read(tmp_path / "raw.bin")[0].data == b"\x00\x01\x02"


def test_stdin_text_and_compressed_fasta(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hello\x00world")))
    [piece] = read("-")
    assert (piece.data, piece.source) == (b"hello\x00world", "-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(b">s\nacgt\n"))))
    with open_input("-") as reader:
        assert reader.kind == "dna"
        assert reader.total_bytes is None
        assert records(list(reader)) == [("s", b"ACGT")]


def test_named_pipe_is_read_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b">p\nAC\nGT\n"))
    writer.start()
    assert records(read(str(fifo))) == [("p", b"ACGT")]
    writer.join()


def test_auto_kind(tmp_path):
    (tmp_path / "notes.md").write_text("> a quote\nthat is not DNA\n")
    (tmp_path / "refs.bib").write_text("@article{x,\n title={y}\n}\n")
    (tmp_path / "seq").write_text(">s\nACGT\n")
    for name in ("notes.md", "refs.bib"):
        with open_input(tmp_path / name) as reader:
            assert reader.kind == "text"
    with open_input(tmp_path / "seq") as reader:
        assert reader.kind == "dna"
    with pytest.raises(InputError, match=r"mix sequence files .*--kind"):
        open_input([tmp_path / "seq", tmp_path / "notes.md"])
    with open_input(tmp_path / "seq", kind="text") as reader:
        assert b"".join(p.data for p in reader) == b">s\nACGT\n"


def test_dna_kind_skips_non_sequence_files_in_directories(tmp_path):
    (tmp_path / "README").write_text("about these genomes\n")
    (tmp_path / "g.fa").write_text(">g\nAC\n")
    with pytest.warns(SkippedFilesWarning, match="README"):
        assert records(read(tmp_path, kind="dna")) == [("g", b"AC")]


# ---------------------------------------------------------------------------------------------------------
# Restarting at a position


def test_restart_gives_exactly_the_rest(tmp_path, rng):
    first, _ = sample_fasta(tmp_path, rng, records_=4)
    second = tmp_path / "second.fa.gz"
    second.write_bytes(gzip.compress(b">last\n" + random_sequence(rng, 2500).encode() + b"\n"))
    inputs = [first, second]
    pieces = read(inputs, piece_size=100)
    stream = [(p.source_index, p.record_index, p.offset + i, base) for p in pieces for i, base in enumerate(p.data)]

    def rest_after(position: ReadPosition) -> list[tuple[int, int, int, int]]:
        key = (position.source_index, position.record_index, position.offset)
        return [entry for entry in stream if entry[:3] >= key]

    starts = [p.next_position for p in pieces] + [p.position for p in pieces]
    starts += [ReadPosition(p.source_index, p.record_index, p.offset + rng.randint(0, len(p.data))) for p in pieces]
    for start in [*rng.sample(starts, 60), ReadPosition(0, 0, 0), ReadPosition(2, 0, 0)]:
        resumed = read(inputs, piece_size=100, start=start)
        got = [(p.source_index, p.record_index, p.offset + i, base) for p in resumed for i, base in enumerate(p.data)]
        assert got == rest_after(start), start
        assert all(p.offset % 100 == 0 for p in resumed[1:] if p.record_index == resumed[0].record_index)


def test_restart_of_text_and_past_the_end(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"0123456789" * 10)
    assert b"".join(p.data for p in read(path, piece_size=30, start=ReadPosition(0, 0, 45))) == path.read_bytes()[45:]
    assert read(path, start=ReadPosition(0, 0, 100)) == []
    with pytest.raises(InputError, match=r"cannot resume .*changed"):
        read(path, start=ReadPosition(0, 0, 101))
    with pytest.raises(InputError, match="cannot resume at record 3"):
        read(path, start=ReadPosition(0, 2, 0))
    with pytest.raises(InputError, match="cannot resume at source 3"):
        read(path, start=ReadPosition(2, 0, 0))


# ---------------------------------------------------------------------------------------------------------
# Bad input: always one InputError naming the place, never a traceback or a shortened sequence


def test_input_error_is_a_user_error():
    assert issubclass(InputError, UserError) and issubclass(InputError, ValueError)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nope\.fa: no such file or directory"):
        open_input(tmp_path / "nope.fa")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.fa"
    path.write_text(">a\nAC\n")
    real_open = open

    def refuse(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(InputError, match=r"locked\.fa: permission denied"):
        open_input(path)


@pytest.mark.parametrize("kind", ["auto", "text", "dna"])
def test_empty_file(tmp_path, kind):
    (tmp_path / "empty.fa").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.fa: the input is empty"):
        open_input(tmp_path / "empty.fa", kind=kind)


def test_empty_compressed_file(tmp_path):
    (tmp_path / "empty.txt.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="empty"):
        open_input(tmp_path / "empty.txt.gz")


def test_directory_with_no_readable_files(tmp_path):
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "blob").write_bytes(b"\x00\x00")
    (tmp_path / "nothing").write_bytes(b"")
    with (
        pytest.raises(InputError, match=r"the directory has no readable files \(2 skipped"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        open_input(tmp_path)


def test_binary_garbage_named_fasta(tmp_path):
    # seeded: with os.urandom it failed once in a full run (session 25; which bytes passed was not kept)
    (tmp_path / "junk.fa").write_bytes(random.Random(5000).randbytes(5000) + b"\x00")
    with pytest.raises(InputError, match=r"junk\.fa: .*binary data"):
        open_input(tmp_path / "junk.fa")


def test_binary_garbage_as_dna(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x7fELF\x00\x01")
    with pytest.raises(InputError, match=r"junk: not a FASTA, FASTQ, GenBank or EMBL file"):
        open_input(tmp_path / "junk", kind="dna")


def test_fasta_without_header(tmp_path):
    (tmp_path / "bare.fa").write_text("\nACGTACGT\n")
    with pytest.raises(InputError, match=r"bare\.fa, line 2: FASTA needs a '>' header"):
        open_input(tmp_path / "bare.fa")


@pytest.mark.parametrize(
    ("text", "record", "line"),
    [
        (">a\nACGT\n>b\n>c\nAC\n", "b", 3),
        (">a\nAC\n>b\n", "b", 3),
        (">a\nAC\n>b", "b", 3),
        (">only\n\n\n", "only", 1),
    ],
)
def test_header_without_sequence(tmp_path, text, record, line):
    (tmp_path / "x.fa").write_text(text)
    with pytest.raises(InputError, match=rf"x\.fa, record '{record}', line {line}: the record has no sequence"):
        read(tmp_path / "x.fa")


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        ("-", "gaps"),
        (".", "gaps"),
        ("X", "protein"),
        ("E", "protein"),
        ("1", "only A C G T"),
        ("\x00", "only A C G T"),
    ],
)
def test_invalid_character_names_file_record_line_and_character(tmp_path, block_size, bad, hint):
    sequence = "ACGT" * 30
    (tmp_path / "bad.fa").write_text(f">ok\nACGT\n>chr7 x\n{sequence}\n{sequence[:50]}{bad}{sequence}\n")
    described = rf"'\{bad}'" if bad in "-." else (rf"'{bad}'" if bad.isprintable() else r"NUL \(0x00\)")
    with pytest.raises(InputError, match=rf"bad\.fa, record 'chr7', line 5: invalid character {described}.*{hint}"):
        read(tmp_path / "bad.fa")


def test_misplaced_header_marker(tmp_path):
    (tmp_path / "x.fa").write_text(">a\nAC>GT\n")
    with pytest.raises(InputError, match=r"record 'a', line 2: invalid character '>'.*own line"):
        read(tmp_path / "x.fa")


def test_fastq_quality_length_differs(tmp_path):
    (tmp_path / "r.fq").write_text("@r1\nACGT\n+\nIIII\n@r2\nACGTA\n+\nIIII\n@r3\nA\n+\nI\n")
    with pytest.raises(InputError, match=r"r\.fq, record 'r2', line 8: the quality line has 4 .* 5 bases"):
        read(tmp_path / "r.fq")
    (tmp_path / "long.fq").write_text("@r1\nACG\n+\nIIII\n")
    with pytest.raises(InputError, match=r"record 'r1', line 4: the quality line has 4 .* 3 bases"):
        read(tmp_path / "long.fq")
    (tmp_path / "cut.fq").write_text("@r1\nACGT\n+\nII")
    with pytest.raises(InputError, match=r"cut\.fq, record 'r1', line 4: the input ends with 2 of 4 quality"):
        read(tmp_path / "cut.fq")


def test_fastq_without_newline_at_the_end(tmp_path):
    (tmp_path / "r.fq").write_text("@r1\nACGT\n+\nIIII")
    assert records(read(tmp_path / "r.fq")) == [("r1", b"ACGT")]


def test_non_utf8_header_is_accepted_with_replacement(tmp_path):
    (tmp_path / "h.fa").write_bytes(b">caf\xe9 \xff\xfe\nACGT\n")
    assert records(read(tmp_path / "h.fa")) == [("caf\ufffd", b"ACGT")]


def test_long_single_line_sequence_streams_in_constant_memory(tmp_path):
    size = 50 << 20
    line = b"ACGTN" * ((1 << 20) // 5) + b"acgt"
    path = tmp_path / "one_line.fa"
    with open(path, "wb") as handle:
        handle.write(b">chr1\n")
        for _ in range(size // len(line)):
            handle.write(line)
        handle.write(b"\n")
    written = path.stat().st_size - len(b">chr1\n\n")
    tracemalloc.start()
    total = 0
    try:
        for piece in open_input(path):
            total += len(piece.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == written
    assert peak < 12 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"


@pytest.mark.slow
def test_one_gigabyte_single_line_sequence_through_a_pipe(tmp_path):
    fifo = tmp_path / "genome.fa"
    os.mkfifo(fifo)
    line = b"ACGT" * (1 << 18)
    chunks = 1 << 10  # 1 GiB of sequence, never on disk

    def write() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b">big\n")
            for _ in range(chunks):
                handle.write(line)
            handle.write(b"\n")

    writer = threading.Thread(target=write)
    writer.start()
    tracemalloc.start()
    total = 0
    try:
        for piece in open_input(str(fifo)):
            total += len(piece.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        writer.join()
    assert total == len(line) * chunks
    assert peak < 12 << 20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_fastq_structure_errors(tmp_path, block_size):
    cases = {
        "@r1\nACGT\n+\nIIII\n@r2\nACXT\n+\nIIII\n": r"record 'r2', line 6: invalid character 'X'",
        "@r1\nACGT\n+\nIIII\nr2\nAC\n+\nII\n": r"line 5: expected a FASTQ record header .* found 'r2'",
        "@r1\nACGT\n@r2\nAC\n+\nII\n": r"record 'r1', line 3: a new '@' record starts before",
        "@r1\n+\n\n": r"record 'r1', line 1: the record has no sequence",
        "@r1\nACGT\n+\nII!\x7f\n": r"record 'r1', line 4: invalid quality character byte 0x7F",
        "@r1\nACGT\n": r"record 'r1', line 3: the input ends inside the record",
    }
    for text, message in cases.items():
        (tmp_path / "r.fq").write_text(text)
        with pytest.raises(InputError, match=message):
            read(tmp_path / "r.fq")


def test_fastq_with_crlf_and_long_reads(tmp_path, block_size):
    sequence = "ACGTN" * 700  # longer than the piece size below: goes through the cutter
    (tmp_path / "r.fq").write_bytes(f"@long\r\n{sequence}\r\n+\r\n{'I' * 3500}\r\n\r\n@s\r\nac\r\n+\r\nII\r\n".encode())
    pieces = read(tmp_path / "r.fq", piece_size=1000)
    assert records(pieces) == [("long", sequence.encode()), ("s", b"AC")]
    assert [len(p.data) for p in pieces] == [1000, 1000, 1000, 500, 2]


@pytest.mark.filterwarnings("ignore::Bio.BiopythonParserWarning")
def test_malformed_genbank_is_an_input_error(tmp_path):
    (tmp_path / "x.gb").write_text("LOCUS       X  10 bp    DNA\nORIGIN\n        1 acgtacgtac\n")
    with pytest.raises(InputError, match=r"x\.gb, record 'X', line 3: the input ends inside a record"):
        read(tmp_path / "x.gb")


def test_several_sources_each_hashed(tmp_path, rng):
    paths = []
    for index, method in enumerate(["none", "gzip", "zstd"]):
        data = f">s{index}\n{random_sequence(rng, 5000)}\n".encode()
        path = tmp_path / f"s{index}.fa"
        if method == "none":
            path.write_bytes(data)
        else:
            compress(data, method, path)
        paths.append(path)
    with open_input(paths, piece_size=1 << 12) as reader:
        pieces = list(reader)
        infos = reader.sources
    assert [p.record for p in pieces if p.record_start] == ["s0", "s1", "s2"]
    assert [p.source_end for p in pieces].count(True) == 3
    assert [(i.path, i.source_index, i.sha256) for i in infos] == [
        (str(path), index, hashlib.sha256(path.read_bytes()).hexdigest()) for index, path in enumerate(paths)
    ]
    assert [i.compression for i in infos] == ["none", "gzip", "zstd"]


def test_api_misuse_is_reported(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(InputError, match="no input given"):
        open_input([])
    with pytest.raises(InputError, match="unknown input kind 'protein'"):
        open_input(tmp_path / "a.txt", kind="protein")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="piece size"):
        open_input(tmp_path / "a.txt", piece_size=0)
    with pytest.raises(InputError, match="more than once"):
        open_input(["-", "-"])
    with pytest.raises(ValueError, match="negative"):
        ReadPosition(0, -1, 0)


def test_dna_kind_refuses_plain_text_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError, match=r"notes\.txt: not a FASTA, FASTQ, GenBank or EMBL file .*'hello'"):
        open_input(tmp_path / "notes.txt", kind="dna")


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "x.fa").write_text(">a\nAC\nA-\n")
    (tmp_path / "y.gb").write_text("LOCUS       Y\nnonsense\n\n\n")
    for path in ("x.fa", "y.gb"):
        with pytest.raises(InputError) as caught:
            read(tmp_path / path)
        assert "\n" not in str(caught.value)
