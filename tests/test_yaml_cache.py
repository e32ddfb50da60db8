"""YAML files and energy tables are parsed once per process and version of the file: an edited
file is read again, and no caller can change what the next one gets."""

from __future__ import annotations

import os
import shutil
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

import simulator.yaml_input as yaml_input
from simulator.config import read_yaml
from simulator.energy import load_energy_table

ROOT = Path(__file__).resolve().parent.parent


def _bump(path: Path, text: str) -> None:
    """Rewrite ``path`` with a modification time surely different from the last one."""
    old = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(old + 10**9, old + 10**9))


def test_a_modified_file_is_read_again(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("a: 1\nb: [1, 2]\n")
    assert read_yaml(f) == {"a": 1, "b": [1, 2]}
    assert read_yaml(f) == {"a": 1, "b": [1, 2]}      # the cached document
    _bump(f, "a: 2\nb: [1, 2]\n")                     # same size, new content and time
    assert read_yaml(f) == {"a": 2, "b": [1, 2]}
    _bump(f, "a: 3\n")
    assert read_yaml(f) == {"a": 3}


def test_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    f, g = tmp_path / "c.yaml", tmp_path / "d.yaml"
    f.write_text("a: 1\n")
    g.write_text("a: 9\n")
    assert read_yaml(f) == {"a": 1}
    os.utime(g, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns))   # same time and size
    os.replace(g, f)                                                # another inode
    assert read_yaml(f) == {"a": 9}


def test_callers_get_their_own_copies(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("a: {b: [1, {c: 2}]}\nd: !!set {x, y}\n")
    first = read_yaml(f)
    first["a"]["b"][1]["c"] = 99
    first["a"]["b"].append(3)
    first["d"].add("z")
    first["new"] = 1
    again = read_yaml(f)
    assert again == {"a": {"b": [1, {"c": 2}]}, "d": {"x", "y"}}
    assert again["a"] is not first["a"] and again["d"] is not first["d"]


def test_errors_are_not_cached(tmp_path: Path) -> None:
    from isa.errors import ConfigError

    f = tmp_path / "c.yaml"
    f.write_text("a: [1\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        read_yaml(f)
    _bump(f, "a: [1]\n")
    assert read_yaml(f) == {"a": [1]}


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    for i in range(yaml_input._CACHE_FILES + 5):
        f = tmp_path / f"c{i}.yaml"
        f.write_text(f"a: {i}\n")
        assert read_yaml(f) == {"a": i}
    assert len(yaml_input._parsed) <= yaml_input._CACHE_FILES


def test_energy_table_is_loaded_once_and_reloaded_when_edited(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    shutil.copy(ROOT / "configs/energy/onyx-12nm.yaml", f)
    first = load_energy_table(f)
    assert load_energy_table(f) is first                    # frozen: shared, not copied
    with pytest.raises(FrozenInstanceError):
        first.voltage_v = 1.0                               # type: ignore[misc]
    over = load_energy_table(f, ["voltage_v=0.7"])          # overrides: their own entry
    assert over.voltage_v == 0.7 and load_energy_table(f).voltage_v == first.voltage_v
    text = f.read_text()
    assert "voltage_v:" in text
    lines = [("voltage_v: 0.5" if ln.startswith("voltage_v:") else ln)
             for ln in text.splitlines()]
    _bump(f, "\n".join(lines) + "\n")
    assert load_energy_table(f).voltage_v == 0.5
