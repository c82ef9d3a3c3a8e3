"""Read a CSV table the way every room must: one clear line for a file that is not what it claims.

pandas quietly renames a repeated column header (``web``, ``web.1``), which turns a
copy-paste slip into a new domain or hides a second ``loss`` column; this reader refuses
repeated headers, empty files and files that are not text.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd


def read_csv(path: str | Path, **kwargs: object) -> pd.DataFrame:
    """A CSV file as a DataFrame, header names stripped.

    Args:
        path: The file.
        **kwargs: Passed to :func:`pandas.read_csv` (``dtype`` …).

    Raises:
        ValueError: one line naming the file: missing, not UTF-8 text, unparsable, no
            rows, or a column header that appears twice.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{path}: no such table file")
    raw = p.read_bytes()
    if b"\0" in raw[:65536]:
        raise ValueError(f"{path}: not a CSV text file (it holds NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    header = next(csv.reader(io.StringIO(text)), None)
    if not header or not any(h.strip() for h in header):
        raise ValueError(f"{path}: the table is empty (no header row)")
    names = [h.strip() for h in header]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path}: column {repeated[0]!r} appears {names.count(repeated[0])} times in the header; each column needs its own name")
    try:
        df = pd.read_csv(io.StringIO(text), **kwargs)  # type: ignore[arg-type]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable CSV table ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise ValueError(f"{path}: the table has no rows")
    return df
