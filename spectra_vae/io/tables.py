"""Tables of spectra: CSV/TSV files whose header row holds the wavenumbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DataError
from ..core.files import regular_file

MAX_HEADER_BYTES = 16 << 20


def read_table(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """A CSV/TSV table and its header row as written (pandas would rename repeated names: 1000, 1000.1).

    The delimiter is one of , ; tab | or blanks, found from the header row (a free sniffer would
    happily split on a letter)."""
    regular_file(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline(MAX_HEADER_BYTES)
        if len(first) >= MAX_HEADER_BYTES:
            raise DataError(f"{path}: the header row is longer than {MAX_HEADER_BYTES >> 20} MB; not a table")
        if not first.strip():
            raise DataError(f"{path}: not a readable table (no header row of wavenumbers)")
        sep = "\t" if path.suffix.lower() == ".tsv" else csv.Sniffer().sniff(first, delimiters=",;\t| ").delimiter
        if sep == " ":
            names = first.split()
            df = pd.read_csv(path, sep=r"\s+", engine="python")
        else:
            names = next(csv.reader([first.rstrip("\r\n")], delimiter=sep))
            df = pd.read_csv(path, sep=sep, engine="c")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise DataError(f"{path}: not a readable table ({type(exc).__name__}: {str(exc)[:200]})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    names = [n.strip() for n in names]
    if len(names) != df.shape[1]:
        raise DataError(f"{path}: the header row has {len(names)} fields but the table {df.shape[1]} columns")
    if df.shape[0] == 0:
        raise DataError(f"{path}: the table has a header row but no spectra")
    return df, names



def is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def numeric_cells(df: pd.DataFrame, where: str) -> np.ndarray:
    """A table's cells as numbers; `DataError` for any cell that is not a number (text, or true/false,
    which pandas would otherwise read as 1 and 0)."""
    for k in range(df.shape[1]):
        column = df.iloc[:, k]
        if column.dtype.kind == "b" or (column.dtype.kind == "O"
                                        and column.map(lambda v: isinstance(v, (bool, np.bool_))).any()):
            raise DataError(f"{where}: column {df.columns[k]!r} holds true/false values, not absorbance; "
                            "non-numeric cells are refused")
    values = df.to_numpy()
    if values.dtype.kind == "c":
        raise DataError(f"{where}: table holds complex numbers, not absorbance")
    if values.dtype.kind not in "fiu":
        try:
            values = values.astype(float)
        except (TypeError, ValueError):
            raise DataError(f"{where}: table holds non-numeric values") from None
    return values
