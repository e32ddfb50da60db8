"""Chip configs: YAML files -> validated :class:`~isa.arch.ChipConfig` objects.

A chip is named by a path (``configs/chips/onyx.yaml``) or by a bare name (``onyx``) that is
looked up as ``<name>.yaml`` in the chip folders (:mod:`isa.configpath`: ``SIEVE_CONFIG_PATH``,
then ``configs/chips`` under the current directory, then the shipped configs). Files are read with
``yaml.safe_load`` only and converted by the one generic loader (:mod:`isa.schema`), so every
problem (bad YAML, unknown keys, wrong types, missing keys, impossible sizes) arrives as one
:class:`~isa.errors.ConfigError` naming the file and listing each problem by key path.

Overrides (``-c key.path=value`` on the command line) are applied to the parsed data before
validation, with each value parsed as YAML (``pe.fifo_depth=4`` is the int 4,
``sim.fidelity=burst`` the string ``burst``), and go through exactly the same checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from isa.arch import ChipConfig
from isa.configpath import config_search_path, list_named_files
from isa.errors import ConfigError
from isa.schema import (
    TOP_LEVEL,
    apply_overrides,
    format_problems,
    load_dataclass,
    resolve_named_file,
    to_dict,
)
from simulator.compose import expand_dram_preset, resolve_base
from simulator.yaml_input import UnreadableText, load_yaml_file, load_yaml_text

__all__ = [
    "DEFAULT_CHIP_ROOT",
    "chip_from_dict",
    "chip_search_path",
    "dump_chip",
    "list_chips",
    "load_chip",
    "parse_override_value",
    "read_yaml",
    "resolve_chip",
]

DEFAULT_CHIP_ROOT = Path("configs/chips")
"""Where bare chip names are looked up, relative to the current directory."""

def parse_override_value(text: str) -> Any:
    """Parse the value of a ``key.path=value`` override as a YAML scalar (or flow collection).

    Text that is not valid YAML on its own (e.g. ``a: b``) is kept as a plain string.
    """
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        return text


def read_yaml(path: str | Path, *, where: str | None = None) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; one ConfigError for any problem.

    ``where`` names the file in messages (default: ``path`` as given).
    """
    name = str(path) if where is None else where
    try:
        data = load_yaml_file(path)     # parsed once per version of the file; our own copy
    except UnreadableText as exc:
        raise ConfigError(format_problems(name, [(TOP_LEVEL, str(exc))])) from None
    except yaml.YAMLError as exc:
        raise ConfigError(format_problems(name, [_yaml_problem(exc)])) from None
    if data is None:
        raise ConfigError(format_problems(name, [(TOP_LEVEL, "file is empty")]))
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        raise ConfigError(format_problems(
            name, [(TOP_LEVEL, f"expected a mapping of keys, got a {kind}")]))
    return data


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, str]:
    """(location, message) for a YAML syntax error, with 1-based line and column."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return (TOP_LEVEL, message)
    return (f"line {mark.line + 1}, column {mark.column + 1}", message)


def chip_search_path(root: str | Path = DEFAULT_CHIP_ROOT) -> list[Path]:
    """The folders searched for bare chip names, in order (duplicates removed)."""
    return config_search_path("chips", root)


def resolve_chip(name_or_path: str | Path, root: str | Path = DEFAULT_CHIP_ROOT) -> Path:
    """The YAML file of a chip given as a path or a bare name (``onyx``); an unknown name
    gives a ConfigError listing the chips available (isa.schema.resolve_named_file)."""
    return resolve_named_file(name_or_path, chip_search_path(root), "chip")


def chip_from_dict(
    data: dict[str, Any], *, where: str, overrides: Sequence[str] = ()
) -> ChipConfig:
    """Validate parsed data (plus overrides) into a ChipConfig; one ConfigError otherwise.
    A ``base:`` (looked up from the current directory) and a DRAM ``preset`` are resolved
    first (:mod:`simulator.compose`)."""
    data = resolve_base(data, None)
    if overrides:
        data = apply_overrides(data, list(overrides), where=where, parse=parse_override_value)
    data = expand_dram_preset(data, where=where)
    cfg = load_dataclass(ChipConfig, data, where=where)
    _check_energy_table(cfg, where)
    return cfg


def _check_energy_table(cfg: ChipConfig, where: str) -> None:
    """The chip's ``energy_table`` names a table that exists (else the run would fail only
    after simulating, with an error that does not name the chip's key)."""
    from simulator.energy import resolve_energy_table

    try:
        file = resolve_energy_table(cfg.energy_table)
    except ConfigError as exc:
        message = str(exc).splitlines()[-1].strip().removeprefix(f"{TOP_LEVEL}: ")
        raise ConfigError(format_problems(
            where, [("energy_table", f"{cfg.energy_table!r}: {message}")])) from None
    if not file.is_file():
        raise ConfigError(format_problems(
            where, [("energy_table", f"no energy table file {file}")]))


def load_chip(path: str | Path, overrides: Sequence[str] = ()) -> ChipConfig:
    """Load a chip config from a YAML path or a bare chip name, applying ``key=value`` overrides.

    A ``base:`` chain is merged and a DRAM ``preset`` expanded first (:mod:`simulator.compose`).
    Raises one ConfigError naming the file for a missing file, a YAML syntax error (with its
    line), a non-mapping document, a bad base or preset, or any combination of schema and
    semantic problems.
    """
    file = resolve_chip(path)
    where = str(file)
    data = resolve_base(read_yaml(file, where=where), file)
    if overrides:
        where = f"{where} (with overrides {' '.join(overrides)})"
    return chip_from_dict(data, where=where, overrides=overrides)


def list_chips(root: str | Path = DEFAULT_CHIP_ROOT) -> list[tuple[str, Path, str]]:
    """(name, path, description) of every chip a bare name finds (:func:`chip_search_path`),
    sorted by name.

    The description is the file's top-level ``description:``; an unreadable file is listed
    with the first line of its problem instead, so one broken file does not hide the others.
    """
    out: list[tuple[str, Path, str]] = []
    for name, file in list_named_files(chip_search_path(root)):
        try:
            description = str(read_yaml(file).get("description", "") or "")
        except ConfigError as exc:
            description = f"(invalid: {str(exc).splitlines()[-1].strip()})"
        out.append((name, file, " ".join(description.split())))
    return out


def dump_chip(cfg: ChipConfig) -> str:
    """The resolved config as YAML text (``load_chip`` of it gives back an equal config)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False, width=100)
