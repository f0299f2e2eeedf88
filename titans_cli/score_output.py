"""Where `score` results go: a table (Parquet, TSV, or TSV on stdout), bedGraph tracks, per-base Parquet.

Rows are written in batches as they come, so a FASTQ of millions of reads or a per-base table of a whole
chromosome never sits in memory. Files are written under a temporary name and renamed when complete: a
run that fails part way leaves no file that looks finished.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from titans_cli.errors import UserError

BATCH_ROWS = 65536
PER_BASE_ROWS = 1 << 20  # rows per Parquet row group of the per-base table


def table_format(path: str) -> str:
    """"parquet", "tsv", or "stdout" from an output path (`-` is TSV on stdout)."""
    if path == "-":
        return "stdout"
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".tsv", ".txt"):
        return "tsv"
    raise UserError(f"{path}: unknown output format; name it .parquet or .tsv, or use - for stdout")


def check_writable(path: str, flag: str) -> None:
    """Fail before any scoring if `flag`'s file cannot be written, not after hours of work."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise UserError(f"{path}: {flag} names a directory; give a file name")
    probe = f"{path}.partial"
    try:
        open(probe, "wb").close()
    except OSError as error:
        raise UserError(f"{path}: cannot write {flag} ({error.strerror}); "
                        "choose a file in an existing, writable directory") from None  # fmt: skip
    os.remove(probe)


class _Output:
    """A file written as PATH.partial and renamed to PATH by `finish()`; `abandon()` removes it."""

    def __init__(self, path: str):
        self.path = path
        self.partial = f"{path}.partial"

    def finish(self) -> None:
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        if os.path.exists(self.partial):
            os.remove(self.partial)


class TableWriter(_Output):
    """Rows (dicts with the fields of `schema`) to Parquet or TSV, in batches.

    With no rows at all the file still gets its typed columns (a header line, or an empty Parquet table).
    """

    def __init__(self, path: str, schema: pa.Schema):
        super().__init__(path)
        self.format, self.schema, self.columns = table_format(path), schema, schema.names
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._parquet: pq.ParquetWriter | None = None
        self._tsv: Any = None
        self._file: Any = None

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= BATCH_ROWS or self.format == "stdout":  # stdout: rows as they come, for pipes
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self.format == "parquet":
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.partial, self.schema)
            self._parquet.write_table(table)
        else:
            self._open_tsv().writerows({k: _tsv_value(v) for k, v in row.items()} for row in self.rows)
        self.rows = []

    def _open_tsv(self) -> csv.DictWriter:
        if self._tsv is None:
            self._file = sys.stdout if self.format == "stdout" else open(self.partial, "w", newline="")  # noqa: SIM115
            self._tsv = csv.DictWriter(self._file, fieldnames=self.columns, delimiter="\t", lineterminator="\n")
            self._tsv.writeheader()
        return self._tsv

    def close(self, complete: bool = True) -> None:
        """Finish the file; with complete=False (the run failed) remove it instead."""
        if complete:
            if not self.count and self.format == "parquet":
                pq.write_table(self.schema.empty_table(), self.partial)
            elif not self.count:
                self._open_tsv()
            self._flush()
        if self._parquet is not None:
            self._parquet.close()
        if self._file is sys.stdout:
            sys.stdout.flush()
            return
        if self._file is not None:
            self._file.close()
        self.finish() if complete else self.abandon()


def _tsv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "NA" if math.isnan(value) else repr(value)  # shortest text that reads back to the same float
    return value


class BedGraphWriter(_Output):
    """A bedGraph track (0-based half-open windows), loadable in IGV and the UCSC browser."""

    def __init__(self, path: str, name: str, description: str):
        super().__init__(path)
        self.file = open(self.partial, "w")  # noqa: SIM115
        self.file.write(f'track type=bedGraph name="{name}" description="{description}"\n')

    def write(self, chrom: str, start: int, end: int, value: float) -> None:
        self.file.write(f"{chrom}\t{start}\t{end}\t{value:.5g}\n")

    def close(self, complete: bool = True) -> None:
        self.file.close()
        self.finish() if complete else self.abandon()


class PerBaseWriter(_Output):
    """Position-level log-likelihoods (natural log; null where unscored: a record's first base, N).

    `base` is the letter for DNA and the raw byte (binary) for text, which need not be valid UTF-8.
    """

    def __init__(self, path: str, dna: bool):
        if table_format(path) != "parquet":
            raise UserError(f"{path}: --per-base writes Parquet; name the file .parquet")
        super().__init__(path)
        self.schema = pa.schema([("id", pa.string()), ("position", pa.int64()),
                                 ("base", pa.string() if dna else pa.binary(1)), ("loglik", pa.float64())])  # fmt: skip
        self.writer = pq.ParquetWriter(self.partial, self.schema)
        self.parts: list[pa.Table] = []
        self.buffered = 0

    def write(self, record: str, offset: int, data: bytes, values: np.ndarray) -> None:
        n = len(data)
        if not n:
            return
        base = pa.array(np.frombuffer(data, dtype="S1"), pa.binary(1))
        self.parts.append(pa.table({
            "id": pa.array([record] * n, pa.string()),  # Parquet dictionary-encodes the repeats
            "position": pa.array(np.arange(offset, offset + n, dtype=np.int64)),
            "base": base.cast(self.schema.field("base").type),
            "loglik": pa.array(values, mask=np.isnan(values)),
        }, schema=self.schema))  # fmt: skip
        self.buffered += n
        if self.buffered >= PER_BASE_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.parts:
            self.writer.write_table(pa.concat_tables(self.parts).combine_chunks())
        self.parts, self.buffered = [], 0

    def close(self, complete: bool = True) -> None:
        if complete:
            self._flush()
        self.writer.close()
        self.finish() if complete else self.abandon()
