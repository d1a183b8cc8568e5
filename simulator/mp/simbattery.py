# The cell on a battery board, as its ADC divider sees it: the charge the energy account says
# was drawn moves the voltage along a linear discharge curve between the profile's full and
# empty voltages. MicroPython dialect (used by the CPython engine and the WASI runner alike).


def charge_mah(energy_us, currents_ma):
    total = 0.0
    for state in energy_us:
        total += energy_us[state] * currents_ma.get(state, 0.0)
    return total / 3600000000.0


def attach(board):
    b = board.profile.get("battery")
    if not b:
        return
    currents = board.profile["currents_ma"]

    def pin_uv(bd):
        used = charge_mah(bd.energy_us, currents)
        soc = 1.0 - used / b["capacity_mah"]
        if soc < 0:
            soc = 0.0
        mv = b["empty_mv"] + (b["full_mv"] - b["empty_mv"]) * soc
        return int(mv * 1000 / b["divider"])

    board.adc_sources[b["adc_pin"]] = pin_uv
