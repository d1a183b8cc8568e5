# Fake of the `esp32` module: internal temperature and deep-sleep wake sources.
_board = None

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4
HEAP_EXEC = 1


def _attach(board):
    global _board
    _board = board


def raw_temperature():
    # Fahrenheit, as the ESP32's internal sensor reports it; follows the world's air
    # temperature plus the chip's self-heating.
    c = _board.extra.get("air_temp_c", 20.0) + 12.0
    return int(c * 9 / 5 + 32)


def wake_on_ext0(pin, level):
    _board.extra["wake_ext0"] = (pin, level)


def wake_on_ext1(pins, level):
    _board.extra["wake_ext1"] = (pins, level)


def wake_on_touch(wake):
    _board.extra["wake_touch"] = wake


def wake_on_ulp(wake):
    _board.extra["wake_ulp"] = wake


def idf_heap_info(capabilities):
    return [(110000, 90000, 60000, 50000)]
