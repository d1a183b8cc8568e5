# Fake of the `gc` module. CPython manages its own memory; the heap figures are meaningful
# only under the real MicroPython runtime (make bench measures them there).
_board = None
_enabled = True
_threshold = -1
_HEAP = 110000  # roughly the free heap after boot on an ESP32 without PSRAM (REFERENCE.md)


def _attach(board):
    global _board
    _board = board


def collect():
    return None


def enable():
    global _enabled
    _enabled = True


def disable():
    global _enabled
    _enabled = False


def isenabled():
    return _enabled


def mem_free():
    return _HEAP


def mem_alloc():
    return 0


def threshold(amount=None):
    global _threshold
    if amount is None:
        return _threshold
    _threshold = amount
