# Fake of the `sys` module as the firmware sees it on the ESP32 port (CPython side only: under
# the WASI MicroPython the real `sys` stays).
_board = None
platform = "esp32"
byteorder = "little"
maxsize = 2147483647
version = "3.4.0; MicroPython v1.29.0 (simulated)"
class _Implementation:
    # The port's sys.implementation (attributes, as mpremote and mpy tools read them). _mpy:
    # .mpy version 6, sub-version 3, architecture xtensawin (10) in bits 10-13, as
    # py/persistentcode.h packs it: 6 | 3 << 8 | 10 << 10 = 11014.
    name = "micropython"
    version = (1, 29, 0, "")
    _machine = "Generic ESP32 module with ESP32"
    _mpy = 11014


implementation = _Implementation()
path = ["", ".frozen", "/lib"]
modules = {}
argv = []


def _attach(board):
    global _board
    _board = board


def exit(retval=0):
    raise SystemExit(retval)


def print_exception(exc, file=None):
    # The firmware's crash report; the text format is not part of any message.
    _board.print("Traceback (most recent call last):")
    _board.print("%s: %s" % (type(exc).__name__, exc))
