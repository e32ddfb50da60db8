"""Number formatting shared by the tables and the pictures."""

from __future__ import annotations

import math

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
             (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))


def si(value: float, unit: str, digits: int = 3) -> str:
    """``value`` with an SI prefix: ``si(6.528e11, "ops/s") == "653 Gops/s"``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    mag = abs(value)
    scale, prefix = next(((sc, p) for sc, p in _PREFIXES if mag >= sc * 0.9995), _PREFIXES[-1])
    scaled = value / scale
    # never fall into exponent notation for the up to four integer digits of a scaled value
    digits = max(digits, len(str(int(abs(round(scaled))))))
    return f"{scaled:.{digits}g} {prefix}{unit}".strip()


def energy_scale(max_pj: float) -> tuple[float, str]:
    """A divisor and unit for energies in pJ so that the largest reads between 1 and 1000."""
    for scale, unit in ((1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if max_pj >= scale:
            return scale, unit
    return 1.0, "pJ"


def ratio(value: float) -> str:
    """A CPU/chip ratio: ``"1.63x"``, ``"1120x"``."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3g}x" if value < 100 else f"{value:,.0f}x"


def count(value: float) -> str:
    """An integer count with thousands separators."""
    return f"{int(value):,}"


def share(part: float, total: float) -> str:
    """``part`` as a percentage of ``total``: "69.8%", small shares to two digits ("0.061%")."""
    if total <= 0:
        return "-"
    pct = 100 * part / total
    return f"{pct:.1f}%" if pct >= 0.1 or pct == 0 else f"{pct:.2g}%"
