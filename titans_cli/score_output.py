"""Where `score` results go: a table (Parquet, TSV, or TSV on stdout), bedGraph tracks, per-base Parquet.

Rows are written in batches as they come, so a FASTQ of millions of reads or a per-base table of a whole
chromosome never sits in memory.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from titans_cli.errors import UserError

BATCH_ROWS = 65536


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


class TableWriter:
    """Rows (dicts with keys `columns`) to Parquet or TSV, in batches; `close()` finishes the file.

    With no rows at all the file still gets its columns (a header line, or an empty Parquet table).
    """

    def __init__(self, path: str, columns: list[str]):
        self.path, self.format, self.columns = path, table_format(path), columns
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._parquet: pq.ParquetWriter | None = None
        self._tsv: Any = None
        self._file: Any = None

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self.format == "parquet":
            table = pa.Table.from_pylist(self.rows)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        else:
            self._open_tsv().writerows({k: _tsv_value(v) for k, v in row.items()} for row in self.rows)
        self.rows = []

    def _open_tsv(self) -> csv.DictWriter:
        if self._tsv is None:
            self._file = sys.stdout if self.format == "stdout" else open(self.path, "w", newline="")  # noqa: SIM115
            self._tsv = csv.DictWriter(self._file, fieldnames=self.columns, delimiter="\t", lineterminator="\n")
            self._tsv.writeheader()
        return self._tsv

    def close(self) -> None:
        if not self.count:  # no rows: still a readable file with the columns
            if self.format == "parquet":
                pq.write_table(pa.table({c: pa.array([], pa.null()) for c in self.columns}), self.path)
            else:
                self._open_tsv()
        self._flush()
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        elif self._file is sys.stdout:
            sys.stdout.flush()


def _tsv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "NA" if math.isnan(value) else f"{value:.6g}"
    return value


class BedGraphWriter:
    """A bedGraph track (0-based half-open windows), loadable in IGV and the UCSC browser."""

    def __init__(self, path: str, name: str, description: str):
        self.file = open(path, "w")  # noqa: SIM115
        self.file.write(f'track type=bedGraph name="{name}" description="{description}"\n')

    def write(self, chrom: str, start: int, end: int, value: float) -> None:
        self.file.write(f"{chrom}\t{start}\t{end}\t{value:.5g}\n")

    def close(self) -> None:
        self.file.close()


PER_BASE_SCHEMA = pa.schema([("id", pa.string()), ("position", pa.int64()), ("base", pa.string()),
                             ("loglik", pa.float64())])  # fmt: skip


class PerBaseWriter:
    """Position-level log-likelihoods (natural log; null where unscored: a record's first base, N)."""

    def __init__(self, path: str):
        if table_format(path) != "parquet":
            raise UserError(f"{path}: --per-base writes Parquet; name the file .parquet")
        self.writer = pq.ParquetWriter(path, PER_BASE_SCHEMA)

    def write(self, record: str, offset: int, data: bytes, values: np.ndarray) -> None:
        n = len(data)
        if not n:
            return
        table = pa.table({
            "id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([record])),
            "position": pa.array(np.arange(offset, offset + n, dtype=np.int64)),
            "base": pa.array(np.frombuffer(data, dtype="S1").astype(str)),
            "loglik": pa.array(values, mask=np.isnan(values)),
        }).cast(PER_BASE_SCHEMA)  # fmt: skip
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
