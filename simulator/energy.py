"""Energy accounting: time in each power state times the board profile's currents."""

from __future__ import annotations

US_PER_HOUR = 3_600_000_000


def charge_mah(energy_us: dict, currents_ma: dict) -> float:
    return sum(us * currents_ma.get(state, 0.0) for state, us in energy_us.items()) / US_PER_HOUR


def per_day(energy_us: dict, currents_ma: dict, span_us: int) -> float:
    if span_us <= 0:
        return 0.0
    return charge_mah(energy_us, currents_ma) * 86_400_000_000 / span_us


def battery_days(mah_per_day: float, capacity_mah: float) -> float:
    return capacity_mah / mah_per_day if mah_per_day > 0 else float("inf")
