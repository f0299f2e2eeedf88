"""Throughput and peak memory of readers/ against Biopython on generated FASTA.

    python bench/readers.py [--size-mb 500] [--repeats 3] [--workdir DIR]

Generates (under a temporary directory, never the repo) a multi-record FASTA (60-column lines) and a
single-line FASTA of --size-mb each, plain and gzipped, then reads each one in a fresh subprocess with
`titans_cli.readers.open_input`, `Bio.SeqIO.parse` and `Bio.SeqIO.FastaIO.SimpleFastaParser`. Throughput
is uncompressed FASTA bytes per second, timed in the child from before its imports to the last base; peak
RSS is the child's own high-water mark (VmHWM), interpreter and imports included. Prints a Markdown table
of medians (peak RSS: the largest of the runs).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

READERS = ("titans", "SeqIO.parse", "SimpleFastaParser")


def _child(reader: str, path: str) -> None:
    """Read one file with one reader; print bases seen and seconds taken as JSON."""
    started = time.perf_counter()
    bases = 0
    if reader == "titans":
        from titans_cli.readers import open_input

        with open_input(path, kind="dna") as pieces:
            for piece in pieces:
                bases += len(piece.data)
    else:
        from Bio import SeqIO
        from Bio.SeqIO.FastaIO import SimpleFastaParser

        with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as handle:
            if reader == "SeqIO.parse":
                for record in SeqIO.parse(handle, "fasta"):
                    bases += len(record.seq)
            else:
                for _, sequence in SimpleFastaParser(handle):
                    bases += len(sequence)
    seconds = time.perf_counter() - started
    # VmHWM is this process's own peak resident set; ru_maxrss of a child would also count the parent's
    # memory at fork time (Linux carries it over exec).
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"bases": bases, "seconds": seconds, "cpu": cpu, "peak_kib": peak_kib}))


def _measure(reader: str, path: str) -> dict[str, float]:
    """seconds, cpu (seconds), bases and peak_mib of one read in a fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", reader, path], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{reader} failed on {path}: {done.stderr.strip()}")
    result = json.loads(done.stdout)
    result["peak_mib"] = result.pop("peak_kib") / 1024
    return result


def _generate(directory: str, size_mb: int) -> dict[str, tuple[str, int]]:
    """Write the four inputs; returns name -> (path, uncompressed bytes)."""
    import numpy as np

    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACGTACGTacgtN", dtype=np.uint8)
    chunk = 4 << 20
    target = size_mb * 1_000_000
    files = {}

    def sequence_chunks(total: int):
        written = 0
        while written < total:
            count = min(chunk, total - written)
            yield letters[rng.integers(0, len(letters), size=count)].tobytes()
            written += count

    multi = os.path.join(directory, "multi.fa")
    with open(multi, "wb") as handle:  # records of 1-3 Mb in 60-column lines, ~size_mb in total
        written = 0
        index = 0
        while written < target:
            length = min(int(rng.integers(1_000_000, 3_000_000)), max(target - written, 1))
            handle.write(f">record{index} generated\n".encode())
            carry = b""
            for part in sequence_chunks(length):
                part = carry + part
                cut = len(part) - len(part) % 60
                lines = np.frombuffer(part[:cut], dtype=np.uint8).reshape(-1, 60)
                handle.write(np.hstack([lines, np.full((len(lines), 1), 10, np.uint8)]).tobytes())
                carry = part[cut:]
            handle.write(carry + b"\n" if carry else b"")
            written += length + length // 60 + 30
            index += 1
    single = os.path.join(directory, "single_line.fa")
    with open(single, "wb") as handle:
        handle.write(b">chr1 one line\n")
        for part in sequence_chunks(target):
            handle.write(part)
        handle.write(b"\n")
    for path in (multi, single):
        files[os.path.basename(path)] = (path, os.path.getsize(path))
        packed = path + ".gz"
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip's default level
        with open(path, "rb") as source, open(packed, "wb") as target_handle:
            while data := source.read(chunk):
                target_handle.write(compressor.compress(data))
            target_handle.write(compressor.flush())
        files[os.path.basename(packed)] = (packed, os.path.getsize(path))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500, help="size of each generated FASTA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="where to put generated data (default: a temporary directory)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    directory = tempfile.mkdtemp(prefix="titans-bench-readers-", dir=args.workdir)
    try:
        started = time.perf_counter()
        files = _generate(directory, args.size_mb)
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"load average before measuring (1, 5, 15 min): {load} on {os.cpu_count()} CPUs\n")
        print(
            f"generated {len(files)} files in {time.perf_counter() - started:.0f} s under {directory}",
            file=sys.stderr,
        )
        print(
            "| input | reader | MB/s | seconds | CPU s | peak RSS MiB | speed vs SeqIO.parse | vs Simple |"
            " CPU-time ratio vs SeqIO.parse |"
        )
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, (path, size) in files.items():
            # interleaved, so that a change in machine load touches every reader alike
            measured: dict[str, list[dict[str, float]]] = {reader: [] for reader in READERS}
            for _ in range(args.repeats):
                for reader in READERS:
                    measured[reader].append(_measure(reader, path))
            medians = {}
            for reader, runs in measured.items():
                bases = {run["bases"] for run in runs}
                assert len(bases) == 1, f"{reader} counted different bases on {name}"
                medians[reader] = {
                    "seconds": statistics.median(run["seconds"] for run in runs),
                    "cpu": statistics.median(run["cpu"] for run in runs),
                    "peak_mib": max(run["peak_mib"] for run in runs),
                    "bases": bases.pop(),
                }
            counts = {value["bases"] for value in medians.values()}
            assert len(counts) == 1, f"readers disagree on the number of bases in {name}: {medians}"
            parse, simple = medians["SeqIO.parse"], medians["SimpleFastaParser"]
            for reader, result in medians.items():
                seconds = result["seconds"]
                print(
                    f"| {name} ({size / 1e6:.0f} MB) | {reader} | {size / seconds / 1e6:.0f} | {seconds:.2f} | "
                    f"{result['cpu']:.2f} | {result['peak_mib']:.0f} | {parse['seconds'] / seconds:.2f}x | "
                    f"{simple['seconds'] / seconds:.2f}x | {parse['cpu'] / result['cpu']:.2f}x |",
                    flush=True,
                )
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"\nload average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
