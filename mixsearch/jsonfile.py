"""Write JSON files atomically and readable by others: the one writer for exports and laws."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(doc: Any, path: str | Path, indent: int = 2) -> Path:
    """Write ``doc`` as JSON to ``path``: a temporary file in the same folder, then a rename.

    A reader never sees half a file, and a crash leaves the old file in place. The file
    gets the usual permissions for a new file (0644 under the common umask 022): exports
    and laws are meant to be read by planners and colleagues. Non-finite floats are
    refused (JSON has none).

    Args:
        doc: JSON-ready data.
        path: Destination (its folder is created).
        indent: Indentation.

    Returns:
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=indent, allow_nan=False)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:
            # A failed write (full disk, file too large) names no file: name the destination.
            raise OSError(exc.errno, exc.strerror, str(p)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
