# Fake of the `sys` module as the firmware sees it on the ESP32 port (CPython side only: under
# the WASI MicroPython the real `sys` stays).
_board = None
platform = "esp32"
byteorder = "little"
maxsize = 2147483647
version = "3.4.0; MicroPython v1.29.0 (simulated)"
implementation = ("micropython", (1, 29, 0, ""), "simulated ESP32", 0x0a06)
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
