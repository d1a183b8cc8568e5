"""Energy accounting: time in each power state times the board profile's currents."""

from __future__ import annotations

from simulator.mp.simbattery import charge_mah  # one formula, shared with the MicroPython side


def per_day(energy_us: dict, currents_ma: dict, span_us: int) -> float:
    if span_us <= 0:
        return 0.0
    return charge_mah(energy_us, currents_ma) * 86_400_000_000 / span_us


def battery_days(mah_per_day: float, capacity_mah: float) -> float:
    return capacity_mah / mah_per_day if mah_per_day > 0 else float("inf")
