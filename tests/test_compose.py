"""Chip files built from others (simulator.compose): ``base:`` inheritance, DRAM presets, the
DRAM clock domain, and where config files are found (isa.configpath, SIEVE_CONFIG_PATH)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from isa.configpath import CONFIG_PATH_ENV, config_search_path, shipped_folder
from isa.errors import ConfigError
from simulator.chip import dram_transfer
from simulator.compose import deep_merge
from simulator.config import list_chips, load_chip
from tests import citations

REPO = Path(__file__).resolve().parent.parent
DRAM = REPO / "configs" / "dram"
PRESETS = ("lpddr4-4266", "ddr4-3200", "hbm2", "hbm3")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [1, 2], "c": 3}
    over = {"a": {"y": {"q": 9}}, "b": [7]}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": {"p": 1, "q": 9}}, "b": [7], "c": 3}
    assert base["a"]["y"]["q"] == 2                    # inputs untouched


def test_five_line_variant_of_onyx_with_hbm2(tmp_path: Path) -> None:
    path = write(tmp_path, "onyx-hbm2.yaml",
                 "base: onyx\n"
                 "description: Onyx with one HBM2 stack and a doubled GLB\n"
                 "glb: {tiles: 32}\n"
                 "pe: {fifo_depth: 4}\n"
                 "dram: {preset: hbm2}\n")
    onyx, cfg = load_chip("onyx"), load_chip(path)
    assert cfg.name == "onyx-hbm2"                     # the file's name, not the base's
    assert cfg.glb.tiles == 32 and cfg.glb.tile_size_bytes == onyx.glb.tile_size_bytes
    assert cfg.pe.fifo_depth == 4 and cfg.pe.zero_policy == onyx.pe.zero_policy
    assert (cfg.dram.preset, cfg.dram.kind, cfg.dram.channels) == ("hbm2", "hbm2", 8)
    assert cfg.dram.bandwidth_gb_per_s == pytest.approx(256.0)
    assert cfg.dram.energy_pj_per_bit == pytest.approx(3.9)
    # everything else is Onyx's
    same = dataclasses.replace(cfg, name=onyx.name, description=onyx.description,
                               glb=onyx.glb, pe=onyx.pe, dram=onyx.dram)
    assert same == onyx


def test_base_chain_by_path_and_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "base: onyx\nglb: {tiles: 8}\n")
    b = write(tmp_path, "b.yaml", "base: a.yaml\npe: {fifo_depth: 3}\n")
    cfg = load_chip(b)
    assert (cfg.name, cfg.glb.tiles, cfg.pe.fifo_depth) == ("b", 8, 3)
    write(tmp_path, "x.yaml", "base: y.yaml\n")
    x = write(tmp_path, "y.yaml", "base: x.yaml\n")
    with pytest.raises(ConfigError, match=r"base: cycle in base chain: y.yaml -> x.yaml -> "
                                          r"y.yaml"):
        load_chip(x)


def test_base_problems_name_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", "base: onyxx\n")
    with pytest.raises(ConfigError) as exc:
        load_chip(path)
    assert str(path) in str(exc.value) and "base:" in str(exc.value)
    assert "did you mean onyx?" in str(exc.value)
    bad = write(tmp_path, "w.yaml", "base: onyx\nglb: {tiles: 0}\n")
    with pytest.raises(ConfigError, match="glb.tiles"):       # the same validation
        load_chip(bad)


def test_dram_preset_keys_after_it_override_and_unknown_preset_lists_them(tmp_path: Path
                                                                         ) -> None:
    cfg = load_chip("onyx", ["dram.preset=hbm3", "dram.channels=8"])
    assert cfg.dram.kind == "hbm3" and cfg.dram.channels == 8
    assert cfg.dram.bandwidth_gb_per_s == pytest.approx(8 * 51.2)
    with pytest.raises(ConfigError) as exc:
        load_chip("onyx", ["dram.preset=hbm9"])
    assert "dram.preset: unknown DRAM preset" in str(exc.value)
    assert all(p in str(exc.value) for p in PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_sets_every_figure(name: str) -> None:
    cfg = load_chip("onyx", [f"dram.preset={name}"])
    d = cfg.dram
    assert d.preset == name and d.channels >= 1 and d.latency_ns > 0
    assert d.energy_pj_per_bit is not None and d.energy_pj_per_bit > 0
    raw = yaml.safe_load((DRAM / f"{name}.yaml").read_text())
    assert set(raw) == {"description", "kind", "channels", "channel_bandwidth_gb_per_s",
                        "latency_ns", "energy_pj_per_bit"}


DRAM_SOURCE = re.compile(r"\b(JEDEC|JESD\w+|Accelergy|O'Connor|Micron)\b|ASSUMPTION")


@pytest.mark.parametrize("path", sorted(DRAM.glob("*.yaml")), ids=lambda p: p.name)
def test_every_number_in_dram_presets_cites_a_source(path: Path) -> None:
    assert citations.uncited_numbers(path.read_text(), DRAM_SOURCE) == []


def test_dram_bandwidth_and_latency_live_in_the_dram_clock_domain() -> None:
    """Halving the chip clock halves neither the DRAM's GB/s nor its ns: in chip cycles, the
    DRAM gives twice the bytes per cycle and half the latency cycles."""
    fast, slow = load_chip("onyx"), load_chip("onyx", ["clock.freq_mhz=425"])
    assert fast.dram_bytes_per_cycle == pytest.approx(17.064e9 / 850e6)
    assert slow.dram_bytes_per_cycle == pytest.approx(2 * fast.dram_bytes_per_cycle)
    assert (fast.dram_latency_cycles, slow.dram_latency_cycles) == (85, 43)
    n = 1 << 20
    seconds = [dram_transfer(c, n).busy_cycles / (c.clock.freq_mhz * 1e6) for c in (fast, slow)]
    assert seconds[0] == pytest.approx(seconds[1], rel=1e-4)    # up to a cycle of rounding
    assert seconds[0] == pytest.approx(n / 17.064e9, rel=1e-4)


def test_more_dram_channels_never_slower() -> None:
    one, two = load_chip("onyx"), load_chip("onyx", ["dram.channels=4"])
    assert dram_transfer(two, 1 << 20).cycles < dram_transfer(one, 1 << 20).cycles


def test_shipped_configs_are_found_from_any_folder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert shipped_folder("chips") == REPO / "configs" / "chips"
    assert {"onyx", "onyx-small"} <= {n for n, _, _ in list_chips()}
    assert load_chip("onyx").name == "onyx"


def test_sieve_config_path_adds_user_folders_first(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    (mine / "chips").mkdir(parents=True)
    (other / "dram").mkdir(parents=True)
    write(mine / "chips", "onyx.yaml", "base: ../../other/none.yaml\n")   # shadows onyx
    write(mine / "chips", "big.yaml", "base: onyx-small\nglb: {tiles: 4}\n"
                                      "dram: {preset: slow}\n")
    write(other / "dram", "slow.yaml", "kind: ddr4\nchannels: 1\n"
          "channel_bandwidth_gb_per_s: 1.0\nlatency_ns: 200\nenergy_pj_per_bit: 20\n")
    monkeypatch.setenv(CONFIG_PATH_ENV, f"{mine}{__import__('os').pathsep}{other}")
    monkeypatch.chdir(tmp_path)
    assert config_search_path("chips", "configs/chips")[0] == mine / "chips"
    listed = {n: p for n, p, _ in list_chips()}
    assert listed["onyx"] == mine / "chips" / "onyx.yaml" and "onyx-small" in listed
    cfg = load_chip("big")
    assert (cfg.glb.tiles, cfg.array.rows, cfg.dram.preset) == (4, 8, "slow")
    assert cfg.dram.bandwidth_gb_per_s == 1.0


def test_sieve_list_dram_shows_the_presets(capsys: pytest.CaptureFixture[str]) -> None:
    from sieve.cli import main

    assert main(["list", "dram"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]]
    assert listed == sorted(PRESETS)


def test_dumped_configs_load_back_equal(tmp_path: Path) -> None:
    """config.yaml of a run folder (dump_chip) loads back to the same chip, with or without a
    DRAM preset (a chip without one dumps ``preset: ''``)."""
    from simulator.config import dump_chip

    plain = write(tmp_path, "plain.yaml", "base: onyx-small\ndram: {kind: ddr4, channels: 1, "
                  "channel_bandwidth_gb_per_s: 25.6, latency_ns: 80, preset: ''}\n")
    for chip in (load_chip("onyx"), load_chip(plain), load_chip("systolic-128")):
        again = write(tmp_path, "again.yaml", dump_chip(chip))
        assert load_chip(again) == chip
