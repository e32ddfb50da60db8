"""A Chrome / Perfetto trace of one run (trace-event JSON; open it at ui.perfetto.dev or in
chrome://tracing).

A model-layer run (timeline.json) has a process with one track per lane and one for the
DRAM channel, one event per job or weight DMA (and tracks for the MAC block's jobs and the
configuration network's loads), and no tiles process (it has no per-tile counters).

One track (thread) per used tile, named by tile, opcode and program node; per unit one
complete event ("ph": "X") from its first to its last active cycle with its counters in
``args``. A second process holds a "kernel" span. Times are kernel-relative (cycle 0 = kernel
launch) in microseconds of chip time: ``ts = cycle / freq_mhz``. An event covers the unit's
first through last active cycle inclusive: ``dur = (last_cycle - first_cycle + 1) /
freq_mhz``.
"""

from __future__ import annotations

from typing import Any

from reports.rundata import RunData, TileUnit

TILES_PID = 1
CONTROLLER_PID = 2
LANES_PID = 3


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": tid, "args": args}


def _track_name(units: list[TileUnit]) -> str:
    u = units[0]
    name = f"{u.tile} {'+'.join(x.opcode for x in units)}"
    nodes = "/".join(x.node for x in units if x.node)
    return f"{name} ({nodes})" if nodes else name


def trace_events(run: RunData) -> dict[str, Any]:
    """The trace-event document (``{"traceEvents": [...], ...}``) of one run."""
    s = run.summary
    freq = run.freq_mhz
    by_tile: dict[str, list[TileUnit]] = {}
    for unit in run.tile_units():
        by_tile.setdefault(unit.tile, []).append(unit)
    events: list[dict[str, Any]] = [
        _meta("process_name", CONTROLLER_PID, 0, {"name": f"{s.get('chip', 'chip')} controller"}),
        _meta("process_sort_index", CONTROLLER_PID, 0, {"sort_index": 0}),
        _meta("thread_name", CONTROLLER_PID, 1, {"name": "kernel"}),
    ]
    kernel_cycles = int(s.get("kernel_cycles", 0))
    events.append({"ph": "X", "name": "kernel", "cat": "controller", "pid": CONTROLLER_PID,
                   "tid": 1, "ts": 0.0, "dur": kernel_cycles / freq,
                   "args": {"kernel_cycles": kernel_cycles, "cycles": s.get("cycles"),
                            "freq_mhz": freq}})
    if by_tile:     # a model layer has no per-tile counters: no (empty) tiles process
        events += [_meta("process_name", TILES_PID, 0,
                         {"name": f"{s.get('chip', 'chip')} tiles: {s.get('workload', '?')} "
                                  f"({s.get('kernel', '?')}), kernel-relative time"}),
                   _meta("process_sort_index", TILES_PID, 0, {"sort_index": 1})]
    for tid, units in enumerate(by_tile.values(), start=1):
        events.append(_meta("thread_name", TILES_PID, tid, {"name": _track_name(units)}))
        events.append(_meta("thread_sort_index", TILES_PID, tid, {"sort_index": tid}))
        for u in units:
            if u.busy_cycles <= 0:
                continue
            span = u.last_cycle - u.first_cycle + 1
            args: dict[str, Any] = {"busy_cycles": u.busy_cycles, "first_cycle": u.first_cycle,
                                    "last_cycle": u.last_cycle,
                                    "busy_share_of_span": round(u.busy_cycles / span, 4)}
            if u.node:
                args["node"] = u.node
            args.update({k: v for k, v in sorted(u.counters.items())
                         if k not in args and v})
            events.append({"ph": "X", "name": u.opcode, "cat": u.kind.value, "pid": TILES_PID,
                           "tid": tid, "ts": u.first_cycle / freq, "dur": span / freq,
                           "args": args})
    events += _layer_events(run, freq)
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"chip": s.get("chip"), "workload": s.get("workload"),
                          "kernel": s.get("kernel"), "fidelity": s.get("fidelity"),
                          "freq_mhz": freq, "time": "kernel-relative; ts and dur in "
                          "microseconds of chip time (cycles / freq_mhz)"}}


def _layer_events(run: RunData, freq: float) -> list[dict[str, Any]]:
    """A model layer's jobs: one track per lane (each job of tiles, or of the MAC block in
    dense mode, as one event) and one track for the shared DRAM channel's weight DMAs; times
    are layer cycles / freq_mhz."""
    if not run.timeline:
        return []
    s = run.summary
    events = [_meta("process_name", LANES_PID, 0,
                    {"name": f"{s.get('chip', 'chip')} lanes ({s.get('mode', 'sparse')} mode):"
                             f" {s.get('workload', '?')}, layer time"}),
              _meta("process_sort_index", LANES_PID, 0, {"sort_index": 2}),
              _meta("thread_name", LANES_PID, 0, {"name": "DRAM (weight DMA)"})]
    lanes = sorted({sp["lane"] for sp in run.timeline if sp["track"] == "lane"})
    for lane in lanes:
        events.append(_meta("thread_name", LANES_PID, lane + 1, {"name": f"lane {lane}"}))
        events.append(_meta("thread_sort_index", LANES_PID, lane + 1, {"sort_index": lane + 1}))
    mac_tid = max(lanes, default=-1) + 2            # dense-mode products: the MAC block
    if any(sp["track"] == "mac block" for sp in run.timeline):
        events.append(_meta("thread_name", LANES_PID, mac_tid, {"name": "MAC block"}))
    if any(sp["track"] == "config" for sp in run.timeline):       # configuration loads
        events.append(_meta("thread_name", LANES_PID, mac_tid + 1,
                            {"name": "configuration network"}))
    for sp in run.timeline:
        tracks = {"dram": 0, "mac block": mac_tid, "config": mac_tid + 1}
        tid = tracks[sp["track"]] if sp["track"] in tracks else sp["lane"] + 1
        args = {k: v for k, v in sp.items() if k not in ("track", "name")}
        events.append({"ph": "X", "name": sp["name"], "cat": sp["track"], "pid": LANES_PID,
                       "tid": tid, "ts": sp["start"] / freq,
                       "dur": (sp["end"] - sp["start"]) / freq, "args": args})
    return events
