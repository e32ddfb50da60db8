"""Chip files built from others: ``base:`` inheritance and DRAM presets, before validation.

A chip file may name a base chip and change only what differs::

    base: onyx                  # a chip name (chip search path) or a YAML path
    name: onyx-hbm2
    description: "Onyx with one HBM2 stack"
    glb: {tiles: 32}
    dram: {preset: hbm2}

:func:`resolve_base` deep-merges the file onto its base (mappings merge key by key, any other
value replaces the base's; a base may itself have a base, and a cycle is an error). A variant
without ``name:`` takes its file name, so it is never reported under its base's name.
A ``dram:`` block that names a preset replaces the base's whole ``dram:`` block (a preset sets
bandwidth, latency, channels and energy together, so nothing of the base's memory survives).

:func:`expand_dram_preset` then, after any ``-c`` overrides, replaces ``preset: NAME`` by the
preset file's values (configs/dram/NAME.yaml, found like chips: :mod:`isa.configpath`), with
the block's other keys overriding them. The result goes through the one generic loader, so a
composed chip gets exactly the checks of a hand-written one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isa.configpath import config_search_path
from isa.errors import ConfigError
from isa.schema import TOP_LEVEL, format_problems, resolve_named_file

__all__ = ["DEFAULT_DRAM_ROOT", "deep_merge", "expand_dram_preset", "resolve_base"]

DEFAULT_DRAM_ROOT = Path("configs/dram")
"""Where bare DRAM preset names are looked up, relative to the current directory."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top: nested mappings merge key by key, any other value
    (scalars, lists) in ``over`` replaces the base's. Neither argument is modified."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_base(data: dict[str, Any], file: Path | None,
                 _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``data`` (read from ``file``, or None for data not from a file) merged onto its
    ``base:`` chain, named after ``file`` unless it says ``name:``; without ``base:`` it is
    returned unchanged.

    Raises ConfigError naming the file and ``base`` for a base that is not a string, cannot
    be found or read, or leads back to a file already in the chain.
    """
    from simulator.config import chip_search_path, read_yaml

    where = str(file) if file is not None else "chip"
    out = dict(data)
    if "base" not in out:
        return out
    if file is not None and "name" not in out:
        out["name"] = file.stem
    base = out.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(format_problems(where, [("base", "expected a chip name or a YAML "
                                                           f"path, got {base!r}")]))
    chain = (*_chain, file.resolve()) if file is not None else _chain
    try:
        base_file = _base_file(base, file, chip_search_path())
    except ConfigError as exc:
        raise _nested(where, "base", exc, "") from None
    if base_file.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, base_file.resolve()))
        raise ConfigError(format_problems(where, [("base", f"cycle in base chain: {cycle}")]))
    try:
        parent = resolve_base(read_yaml(base_file), base_file, chain)
    except ConfigError as exc:
        raise _nested(where, "base", exc, f"in {base_file}: ") from None
    for key in ("name", "description"):     # a variant's identity is its own
        parent.pop(key, None)
    if isinstance(out.get("dram"), dict) and "preset" in out["dram"]:
        parent.pop("dram", None)
    return deep_merge(parent, out)


def _nested(where: str, key: str, exc: ConfigError, prefix: str) -> ConfigError:
    """A ConfigError of a file named by ``key`` (a base, a preset), re-placed at ``key`` of
    the file ``where`` that names it, one problem per line of the original."""
    lines = [ln.strip() for ln in str(exc).splitlines()[1:]] or [str(exc)]
    top = f"{TOP_LEVEL}: "
    return ConfigError(format_problems(
        where, [(key, prefix + (ln[len(top):] if ln.startswith(top) else ln)) for ln in lines]))


def _base_file(base: str, file: Path | None, chips: list[Path]) -> Path:
    """The file of a ``base:`` value: a path (relative to the naming file's folder when that
    exists, else to the current directory) or a bare chip name on the chip search path."""
    path = Path(base)
    if file is not None and not path.is_absolute() and ("/" in base or path.suffix in
                                                        (".yaml", ".yml")):
        beside = file.parent / path
        if beside.is_file():
            return beside
    return resolve_named_file(base, chips, "base chip")


def expand_dram_preset(data: dict[str, Any], *, where: str,
                       root: str | Path = DEFAULT_DRAM_ROOT) -> dict[str, Any]:
    """``data`` with ``dram: {preset: NAME, ...}`` replaced by the preset's values overlaid
    with the block's other keys; unchanged when there is no preset. The ``preset`` key stays
    (it is the DramConfig field recording the choice). An unknown preset is a ConfigError
    naming ``dram.preset`` and listing the presets available."""
    dram = data.get("dram")
    if not isinstance(dram, dict) or dram.get("preset", "") == "":   # "": written by dump_chip
        return data
    name = dram["preset"]
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(format_problems(where, [("dram.preset",
                                                   f"expected a preset name, got {name!r}")]))
    from simulator.config import read_yaml

    try:
        file = resolve_named_file(name, config_search_path("dram", root), "DRAM preset")
        preset = read_yaml(file)
    except ConfigError as exc:
        raise _nested(where, "dram.preset", exc, "") from None
    preset.pop("description", None)
    if "preset" in preset:
        raise ConfigError(format_problems(str(file), [(TOP_LEVEL, "a DRAM preset may not name "
                                                                  "another preset")]))
    return {**data, "dram": {**preset, **dram, "preset": Path(str(name)).stem}}
