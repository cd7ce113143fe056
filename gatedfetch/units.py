"""Byte counts as people read them (standard library only: failures and --help use it before the venv exists)."""

from __future__ import annotations

_SCALES = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def _unit(n: float) -> tuple[str, float]:
    for unit, scale in _SCALES:
        if abs(n) >= scale:
            return unit, scale
    return "B", 1.0


def human_bytes(n: int) -> str:
    """'3.6 GB', '512.0 kB', '12 B'."""
    unit, scale = _unit(n)
    return f"{n} B" if scale == 1.0 else f"{n / scale:.1f} {unit}"


def shortfall(needed: int, free: int) -> str:
    """'3600.0 MB needed, 3595.0 MB free (5.0 MB short)': both in the unit that shows the difference."""
    unit, scale = _unit(needed - free)
    if scale == 1.0:
        return f"{needed} B needed, {free} B free ({needed - free} B short)"
    short = (needed - free) / scale
    return f"{needed / scale:.1f} {unit} needed, {free / scale:.1f} {unit} free ({short:.1f} {unit} short)"
