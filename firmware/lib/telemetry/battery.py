# Battery voltage through the board's ADC divider (board.json "battery" block).
import machine


def millivolts(prof):
    """The cell voltage in mV, or None on a board without a battery divider."""
    b = prof.get("battery")
    if not b:
        return None
    adc = machine.ADC(machine.Pin(b["adc_pin"]), atten=machine.ADC.ATTN_11DB)
    # Average a few conversions: the ESP32 ADC is noisy (Espressif ADC guide, "noise").
    total = 0
    for _ in range(4):
        total += adc.read_uv()
    return int(total // 4 * b["divider"] // 1000)
