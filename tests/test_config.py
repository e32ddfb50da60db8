"""Chip configs: the generic loader (isa.schema), the YAML front end (simulator.config) and the
shipped chip files, including the rule that every number in configs/chips cites its source."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from isa.arch import ChipConfig, GlbConfig, PeConfig, ZeroPolicyConfig
from isa.errors import ConfigError
from isa.ops import TileKind
from isa.schema import (
    apply_overrides,
    build_dataclass,
    format_problems,
    load_dataclass,
    parse_literal,
    to_dict,
)
from simulator.config import (
    chip_from_dict,
    dump_chip,
    list_chips,
    load_chip,
    parse_override_value,
    resolve_chip,
)
from tests import citations

REPO = Path(__file__).resolve().parents[1]
CHIPS = REPO / "configs" / "chips"
ONYX = CHIPS / "onyx.yaml"
ONYX_SMALL = CHIPS / "onyx-small.yaml"


def onyx_data() -> dict[str, Any]:
    """A fresh copy of onyx.yaml as plain data, to break in a test."""
    return yaml.safe_load(ONYX.read_text())


def write_yaml(tmp_path: Path, data: Any, name: str = "chip.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problem_lines(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    """The problem lines of a ConfigError message (without the header)."""
    return [line.strip() for line in str(exc.value).splitlines()[1:]]


# ---------------------------------------------------------------------------------------------
# The shipped chips


def test_onyx_loads_with_the_silicon_numbers() -> None:
    cfg = load_chip(ONYX)
    assert isinstance(cfg, ChipConfig)
    assert cfg.name == "onyx"
    assert cfg.description
    assert (cfg.array.rows, cfg.array.cols) == (16, 32)
    assert len(cfg.array.tiles(TileKind.PE)) == 384
    assert len(cfg.array.tiles(TileKind.MEM)) == 128
    assert cfg.mem_tile.size_bytes == 4096
    assert cfg.glb.size_bytes == 4 * 1024 * 1024
    assert cfg.glb.array_bytes_per_cycle == 32.0
    assert cfg.clock.freq_mhz == 850.0 and isinstance(cfg.clock.freq_mhz, float)
    assert cfg.interconnect.track_bits == 17
    assert cfg.dram.kind == "lpddr4"
    # LPDDR4-4266 x32 (configs/dram/lpddr4-4266.yaml) at 850 MHz, as in the file's comment.
    assert cfg.dram.preset == "lpddr4-4266"
    assert cfg.dram.bandwidth_gb_per_s == pytest.approx(4266e6 * 4 / 1e9)
    assert cfg.dram_bytes_per_cycle == pytest.approx(4266e6 * 4 / 850e6)
    assert cfg.dram_latency_cycles == 85
    assert cfg.sim.fidelity == "burst"


def test_onyx_small_is_the_same_chip_with_a_small_array() -> None:
    small, full = load_chip(ONYX_SMALL), load_chip(ONYX)
    assert small.name == "onyx-small"
    assert (small.array.rows, small.array.cols) == (8, 8)
    assert len(small.array.tiles(TileKind.PE)) == 48
    assert len(small.array.tiles(TileKind.MEM)) == 16
    assert small.glb.tiles == 2
    for section in ("clock", "pe", "mem_tile", "interconnect", "dram", "controller", "sim"):
        assert getattr(small, section) == getattr(full, section), section
    assert small.glb.tile_size_bytes == full.glb.tile_size_bytes


def test_bare_name_resolves_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert resolve_chip("onyx") == Path("configs/chips/onyx.yaml")
    assert load_chip("onyx-small").name == "onyx-small"
    # A chip folder in the current directory comes first.
    (tmp_path / "configs" / "chips").mkdir(parents=True)
    data = onyx_data()
    data["name"] = "mine"
    write_yaml(tmp_path / "configs" / "chips", data, "mine.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_chip("mine").name == "mine"
    assert load_chip("onyx").name == "onyx"      # found in the source tree as a fallback


def test_unknown_chip_name_lists_the_available_chips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as exc:
        load_chip("onxy")
    message = str(exc.value)
    assert message.startswith("invalid config onxy:")
    assert "did you mean onyx?" in message
    assert "onyx, onyx-small" in message


def test_list_chips() -> None:
    listed = list_chips(CHIPS)
    assert [name for name, _, _ in listed] == sorted(name for name, _, _ in listed)
    chips = {name: (path, desc) for name, path, desc in listed}
    assert {"onyx", "onyx-small"} <= set(chips)
    assert chips["onyx"][0] == ONYX
    assert "Onyx" in chips["onyx"][1]
    # the shipped chips are listed from any folder (isa.configpath), whatever ``root`` is
    assert [n for n, _, _ in list_chips(REPO / "no-such-folder")] == sorted(chips)


def test_dump_chip_round_trips(tmp_path: Path) -> None:
    cfg = load_chip(ONYX, ["pe.zero_policy.a=gate"])
    text = dump_chip(cfg)
    assert "zero_policy" in text and "gate" in text
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    assert load_chip(path) == cfg


# ---------------------------------------------------------------------------------------------
# Problems in a chip file: one error, every problem, full key paths


def test_misspelled_key_gets_a_suggestion(tmp_path: Path) -> None:
    data = onyx_data()
    data["pe"]["fifo_dept"] = data["pe"].pop("fifo_depth")
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    assert str(exc.value).splitlines()[0] == f"invalid config {path}:"
    assert "pe.fifo_dept: unknown key (did you mean fifo_depth?)" in problem_lines(exc)
    assert "pe.fifo_depth: required key missing" in problem_lines(exc)


def test_unknown_key_without_a_close_match_lists_the_valid_keys(tmp_path: Path) -> None:
    data = onyx_data()
    data["clock"]["voltage"] = 0.78
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == ["clock.voltage: unknown key (valid keys: freq_mhz, max_freq_mhz)"]


def test_wrong_type(tmp_path: Path) -> None:
    data = onyx_data()
    data["array"]["cols"] = "four"
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == ["array.cols: expected int, got 'four'"]


def test_missing_key(tmp_path: Path) -> None:
    data = onyx_data()
    del data["glb"]["tile_size_bytes"]
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == ["glb.tile_size_bytes: required key missing"]


def test_missing_section_and_defaulted_section(tmp_path: Path) -> None:
    data = onyx_data()
    del data["dram"]
    del data["sim"]                     # has a default: optional
    del data["pe"]["zero_policy"]       # has a default: optional
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == ["dram: required key missing"]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    data = onyx_data()
    data["array"]["cols"] = "four"
    data["pe"]["fifo_dept"] = 3
    data["glb"]["banks_per_tile"] = 3       # semantic: does not divide 262144
    del data["glb"]["link_bits"]            # ...but glb cannot be built, so only this is listed
    data["interconnect"]["fifo_depth"] = 0  # semantic, in a section that builds
    data["sim"]["fidelity"] = True          # a bool is not a str
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    assert str(exc.value) == "\n".join([
        f"invalid config {path}:",
        "  array.cols: expected int, got 'four'",
        "  pe.fifo_dept: unknown key (did you mean fifo_depth?)",
        "  interconnect.fifo_depth: must be >= 1",
        "  glb.link_bits: required key missing",
        "  sim.fidelity: expected str, got True",
    ])


def test_semantic_problems_have_full_key_paths(tmp_path: Path) -> None:
    data = onyx_data()
    data["glb"]["banks_per_tile"] = 3
    data["pe"]["fifo_depth"] = 0
    data["pe"]["zero_policy"]["b"] = "sometimes"
    data["clock"]["freq_mhz"] = 1000
    data["array"]["cols"] = "thirty-two"   # a type error reported in the same list
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == [
        "clock.freq_mhz: 1000.0 exceeds max_freq_mhz 970.0",
        "array.cols: expected int, got 'thirty-two'",
        "pe.zero_policy.b: must be one of skip, gate, none (got 'sometimes')",
        "pe.fifo_depth: must be >= 1",
        "glb.banks_per_tile: must divide tile_size_bytes (262144)",
    ]


def test_unknown_key_does_not_hide_semantic_problems_of_its_section(tmp_path: Path) -> None:
    data = onyx_data()
    data["pe"]["fifo_depth"] = 0
    data["pe"]["fifo_dept"] = 4
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == [
        "pe.fifo_dept: unknown key (did you mean fifo_depth?)",
        "pe.fifo_depth: must be >= 1",
    ]


def test_int_and_bool_are_not_interchangeable(tmp_path: Path) -> None:
    data = onyx_data()
    data["pe"]["fifo_depth"] = True
    data["mem_tile"]["size_bytes"] = 4096.0
    data["dram"]["channel_bandwidth_gb_per_s"] = "fast"
    data["clock"] = [850, 970]
    with pytest.raises(ConfigError) as exc:
        load_chip(write_yaml(tmp_path, data))
    assert problem_lines(exc) == [
        "clock: expected a mapping, got a list",
        "pe.fifo_depth: expected int, got True",
        "mem_tile.size_bytes: expected int, got 4096.0",
        "dram.channel_bandwidth_gb_per_s: expected float, got 'fast'",
    ]


# ---------------------------------------------------------------------------------------------
# Overrides


def test_overrides_are_parsed_as_yaml_and_applied() -> None:
    cfg = load_chip(ONYX, ["pe.fifo_depth=4", "sim.fidelity=cycle",
                           "dram.channels=4", "pe.zero_policy.b=gate"])
    assert cfg.pe.fifo_depth == 4
    assert cfg.sim.fidelity == "cycle"
    assert cfg.dram.bandwidth_gb_per_s == pytest.approx(4 * 8.532)
    assert cfg.pe.zero_policy == ZeroPolicyConfig(a="skip", b="gate")
    assert load_chip(ONYX).pe.fifo_depth == 2          # the file itself is untouched


def test_override_to_a_bad_value_fails_the_semantic_check() -> None:
    with pytest.raises(ConfigError) as exc:
        load_chip(ONYX, ["pe.fifo_depth=0"])
    assert str(exc.value).splitlines()[0].startswith(f"invalid config {ONYX}")
    assert "pe.fifo_depth=0" in str(exc.value).splitlines()[0]
    assert problem_lines(exc) == ["pe.fifo_depth: must be >= 1"]


def test_override_of_an_unknown_key_is_a_misspelling() -> None:
    with pytest.raises(ConfigError) as exc:
        load_chip(ONYX, ["pe.fifo_dept=4"])
    assert problem_lines(exc) == ["pe.fifo_dept: unknown key (did you mean fifo_depth?)"]
    with pytest.raises(ConfigError) as exc:
        load_chip(ONYX, ["pee.fifo_depth=4"])
    assert problem_lines(exc) == ["pee: unknown key (did you mean pe?)"]


def test_override_with_a_wrong_type() -> None:
    with pytest.raises(ConfigError) as exc:
        load_chip(ONYX, ["array.cols=four", "pe.datapath_bits=true"])
    assert problem_lines(exc) == [
        "array.cols: expected int, got 'four'",
        "pe.datapath_bits: expected int, got True",
    ]


def test_malformed_overrides_are_named() -> None:
    with pytest.raises(ConfigError) as exc:
        load_chip(ONYX, ["pe.fifo_depth", "=3", "pe.fifo_depth.x=1"])
    assert problem_lines(exc) == [
        "override 'pe.fifo_depth': expected key.path=value",
        "override '=3': empty key in key.path=value",
        "override 'pe.fifo_depth.x=1': pe.fifo_depth holds 2, not a mapping",
    ]


def test_override_values() -> None:
    assert parse_override_value("4") == 4
    assert parse_override_value("4.5") == 4.5
    assert parse_override_value("true") is True
    assert parse_override_value("burst") == "burst"
    assert parse_override_value("a: b: c") == "a: b: c"
    assert parse_literal("4") == 4 and parse_literal("-2.5") == -2.5
    assert parse_literal("False") is False and parse_literal("null") is None
    assert parse_literal(" burst ") == "burst"


def test_apply_overrides_returns_a_new_dict() -> None:
    data = {"a": {"b": 1}}
    out = apply_overrides(data, ["a.b=2", "a.c.d=x"], where="t")
    assert out == {"a": {"b": 2, "c": {"d": "x"}}}
    assert data == {"a": {"b": 1}}


# ---------------------------------------------------------------------------------------------
# The YAML front end


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nclock:\n  freq_mhz: 850\n    max_freq_mhz: 970\n")
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    lines = str(exc.value).splitlines()
    assert lines[0] == f"invalid config {path}:"
    assert len(lines) == 2
    assert lines[1].strip().startswith("line 4, column")
    assert "YAML syntax error" in lines[1]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    assert str(exc.value) == f"invalid config {path}:\n  (top level): file not found"


@pytest.mark.parametrize(("text", "problem"), [
    ("- 1\n- 2\n", "expected a mapping of keys, got a list"),
    ("just a string\n", "expected a mapping of keys, got a str"),
    ("", "file is empty"),
])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    assert problem_lines(exc) == [f"(top level): {problem}"]


def test_chip_from_dict_uses_the_given_name() -> None:
    with pytest.raises(ConfigError) as exc:
        chip_from_dict({"name": "x"}, where="inline")
    assert str(exc.value).startswith("invalid config inline:\n  clock: required key missing")


# ---------------------------------------------------------------------------------------------
# The generic loader on its own


@dataclass(frozen=True)
class Leaf:
    x: int
    label: str = "leaf"

    def problems(self) -> list[tuple[str, str]]:
        return [("x", "must be even")] if self.x % 2 else []


@dataclass(frozen=True)
class Tree:
    ratio: float
    enabled: bool
    leaves: tuple[Leaf, ...]
    pair: tuple[int, str]
    table: dict[str, Leaf]
    sizes: list[int] = field(default_factory=list)
    maybe: Leaf | None = None
    limit: int | None = None

    def problems(self) -> list[tuple[str, str]]:
        return [("", "needs a leaf")] if not self.leaves else []


def tree_data() -> dict[str, Any]:
    return {"ratio": 1, "enabled": False, "leaves": [{"x": 2}], "pair": [1, "a"],
            "table": {"k": {"x": 4, "label": "K"}}}


def test_generic_loader_builds_nested_containers() -> None:
    tree = load_dataclass(Tree, tree_data(), where="t")
    assert tree == Tree(ratio=1.0, enabled=False, leaves=(Leaf(2),), pair=(1, "a"),
                        table={"k": Leaf(4, "K")})
    assert isinstance(tree.ratio, float)
    assert load_dataclass(Tree, to_dict(tree), where="t") == tree
    assert to_dict(tree)["leaves"] == [{"x": 2, "label": "leaf"}]


def test_generic_loader_paths_into_containers() -> None:
    data = tree_data()
    data["leaves"] = [{"x": 2}, {"x": 3}, {"y": 1}]
    data["pair"] = [1, 2]
    data["table"] = {"k": {"x": "4"}, "j": {"x": 5}}
    data["sizes"] = [1, None]
    data["maybe"] = {"x": 1.5}
    data["limit"] = "none"
    data["enabled"] = 1
    tree, problems = build_dataclass(Tree, data)
    assert tree is None
    assert problems == [
        ("enabled", "expected bool, got 1"),
        ("leaves[1].x", "must be even"),
        ("leaves[2].y", "unknown key (valid keys: x, label)"),
        ("leaves[2].x", "required key missing"),
        ("pair[1]", "expected str, got 2"),
        ("table.k.x", "expected int, got '4'"),
        ("table.j.x", "must be even"),
        ("sizes[1]", "expected int, got null"),
        ("maybe.x", "expected int, got 1.5"),
        ("limit", "expected int or null, got 'none'"),
    ]


def test_generic_loader_semantic_problem_of_the_root_and_wrong_root() -> None:
    data = tree_data()
    data["leaves"] = []
    tree, problems = build_dataclass(Tree, data)
    assert tree is not None and problems == [("", "needs a leaf")]
    with pytest.raises(ConfigError) as exc:
        load_dataclass(Tree, data, where="t")
    assert str(exc.value) == "invalid config t:\n  (top level): needs a leaf"
    with pytest.raises(ConfigError) as exc:
        load_dataclass(Tree, [1, 2], where="t")
    assert str(exc.value) == "invalid config t:\n  (top level): expected a mapping, got a list"
    bad = tree_data()
    bad["pair"] = [1, "a", 3]
    assert build_dataclass(Tree, bad)[1] == [("pair", "expected 2 items, got 3")]


def test_generic_loader_on_arch_classes() -> None:
    glb = load_dataclass(GlbConfig, to_dict(load_chip(ONYX).glb), where="glb")
    assert glb.size_bytes == 16 * 262144
    with pytest.raises(ConfigError) as exc:
        load_dataclass(PeConfig, {"fifo_depth": 2, "datapath_bits": 12}, where="pe")
    assert str(exc.value) == "invalid config pe:\n  datapath_bits: must be 8, 16 or 32"
    assert format_problems("w", [("a.b", "m")]) == "invalid config w:\n  a.b: m"


# ---------------------------------------------------------------------------------------------
# The citation rule: every number in configs/chips has a source or says ASSUMPTION


SOURCE = re.compile(
    r"\b(VLSI24|MICRO25|JSSC25|SAM23|LATTE23|DAM24|FUSEFLOW26|AHA|garnet|lake|canal"
    r"|SCALESIM3)\b"
    r"|ASSUMPTION")


def uncited_numbers(text: str) -> list[tuple[int, str]]:
    return citations.uncited_numbers(text, SOURCE)


def test_citation_checker_catches_an_uncited_number() -> None:
    text = "\n".join([
        "a:",
        "  b: 1        # VLSI24 Fig. 8",
        "  # ASSUMPTION: because",
        "  # more words",
        "  c: 2.5",
        "  d: 3        # no source here",
        "  e: '4'      # a string, not a number",
        "  f: [1, 2]   # a list",
        "  g: 5 # garnet cgra/util_onyx.py",
        "  h: 6",
        "  name: x",
    ])
    assert uncited_numbers(text) == [(6, "  d: 3        # no source here"), (10, "  h: 6")]


@pytest.mark.parametrize("path", sorted(CHIPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_number_in_chip_configs_cites_a_source(path: Path) -> None:
    text = path.read_text()
    assert uncited_numbers(text) == []
    assert citations.private_note_citations(text) == []   # public sources only
    # Sanity: the checker did see the numbers of this file.
    numbers = [ln for ln in text.splitlines() if re.match(r"^\s*[\w-]+:\s*[\d.]+\s*(#|$)", ln)]
    assert len(numbers) >= (2 if re.search(r"^base:", text, re.M) else 20)   # a variant: few


def test_chip_configs_are_all_loadable() -> None:
    files = sorted(CHIPS.glob("*.yaml"))
    assert {p.stem for p in files} >= {"onyx", "onyx-small"}
    for path in files:
        cfg = load_chip(path)
        assert cfg.name == path.stem
        assert cfg.description
        assert copy.deepcopy(cfg) == cfg
