"""The rules of a run folder on disk: which folders ``--out`` may write, and strict JSON.

- A run folder carries a marker file (``MARKER``). ``--out`` may name a new or empty folder,
  or an earlier run folder, which is then replaced whole (every old file removed, so a trace
  or a picture of the earlier run can never mix with the new one), with a note on stderr.
  A non-empty folder without the marker, or a path that is a file, is refused.
- Every JSON file of a run folder is strict JSON: no NaN or Infinity (which ``json.dumps``
  writes by default and strict parsers reject). A non-finite number is an error naming its
  key path, never written.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from isa.errors import SieveError

__all__ = ["MARKER", "RunFolderError", "check_run_dir", "prepare_run_dir", "strict_json"]

MARKER = ".sieve-run"
"""The file that marks a folder as written by ``sieve run`` (safe to replace whole)."""

_log = logging.getLogger("sieve")


class RunFolderError(SieveError):
    """An output folder cannot be written (a file, or a folder of other files), or a run's
    data cannot be written as strict JSON."""


def check_run_dir(out: str | Path) -> Path:
    """Refuse an ``--out`` that is a file or a non-empty folder other than a run folder
    (called before a run starts, so a long run never ends on this). Returns the path."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise RunFolderError(f"--out {path}: the folder is not empty and is not a Sieve run "
                             f"folder (no {MARKER} file); name a new or empty folder")
    return path


def prepare_run_dir(out: str | Path) -> Path:
    """Make ``out`` an empty, marked run folder: create it, or empty an earlier run folder
    (with a note on stderr). Refuses what :func:`check_run_dir` refuses."""
    path = check_run_dir(out)
    old = sorted(path.iterdir()) if path.is_dir() else []
    if old:
        _log.warning("note: --out %s held an earlier run; its %d files are replaced", path,
                     len(old))
        for entry in old:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("written by `sieve run --out`; a new run replaces this "
                               "folder's contents whole\n")
    return path


def strict_json(doc: Any, *, where: str, **dumps_args: Any) -> str:
    """``json.dumps(doc, allow_nan=False, ...)``, raising RunFolderError naming the key path of
    the first non-finite number (``where`` names the file; the document is walked for it only
    when ``json`` refuses one)."""
    try:
        return json.dumps(doc, allow_nan=False, **dumps_args)
    except ValueError:
        bad = _non_finite(doc, "")
        if bad is None:
            raise
        path, value = bad
        raise RunFolderError(f"{where}: {path or '(top level)'} is {value}, which strict JSON "
                             "cannot hold (a model input or result that is not finite)"
                             ) from None


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_finite(item, f"{path}[{i}]")
            if found:
                return found
    return None
