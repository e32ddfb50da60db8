"""Where config files are found: user folders, the current directory, the shipped configs.

Chips, CPU presets, energy tables and DRAM presets are YAML files named by a path or by a bare
name (``onyx``, ``xeon-12c``, ``onyx-12nm``, ``hbm2``). A bare name of kind ``chips`` (or
``cpus``, ``energy``, ``dram``) is looked up as ``NAME.yaml`` in, in order:

1. ``<entry>/<kind>`` for each entry of the ``SIEVE_CONFIG_PATH`` environment variable
   (folders separated by ``os.pathsep``, each laid out like the shipped ``configs/``);
2. ``configs/<kind>`` under the current directory (the checkout's layout);
3. the configs shipped with the package (the ``configs`` package data, found with
   :mod:`importlib.resources`, so an installed wheel works from any directory).

The first folder holding a name wins, for lookups and listings alike.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from isa.schema import search_path

__all__ = ["CONFIG_PATH_ENV", "config_search_path", "list_named_files", "shipped_folder"]

CONFIG_PATH_ENV = "SIEVE_CONFIG_PATH"
"""Environment variable: extra config roots (``os.pathsep``-separated), searched first."""


def shipped_folder(kind: str) -> Path | None:
    """The folder of shipped configs of ``kind`` (``chips``, ``cpus``, ``energy``, ``dram``),
    or None when the ``configs`` package is not importable or has no such folder."""
    try:
        root = importlib.resources.files("configs")
    except ModuleNotFoundError:
        return None
    folder = Path(str(root / kind))
    return folder if folder.is_dir() else None


def user_folders(kind: str) -> list[Path]:
    """``<entry>/<kind>`` for each entry of ``SIEVE_CONFIG_PATH`` (empty entries skipped)."""
    entries = os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep)
    return [Path(e).expanduser() / kind for e in entries if e.strip()]


def config_search_path(kind: str, root: str | Path) -> list[Path]:
    """The existing folders searched for bare names of ``kind``, in order, without duplicates:
    the ``SIEVE_CONFIG_PATH`` folders, then ``root`` (relative to the current directory), then
    the shipped configs."""
    shipped = shipped_folder(kind)
    return search_path(*user_folders(kind), root, *([shipped] if shipped else []))


def list_named_files(folders: list[Path]) -> list[tuple[str, Path]]:
    """(name, path) of every ``*.yaml`` in ``folders``, sorted by name; when two folders hold
    the same name, the earlier folder's file is the one a bare-name lookup finds and lists."""
    found: dict[str, Path] = {}
    for folder in folders:
        for file in sorted(folder.glob("*.yaml")):
            found.setdefault(file.stem, file)
    return sorted(found.items())
