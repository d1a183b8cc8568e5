# Fake of MicroPython's `random`: a seeded generator per node, so the same scenario seed
# gives the same run (the real module seeds from the hardware RNG).
_board = None
_state = 1


def _attach(board):
    global _board
    _board = board
    seed(board.seed)


def _next32():
    # xorshift32: small, fast, identical under CPython and MicroPython.
    global _state
    x = _state
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    _state = x
    return x


def seed(n=None):
    global _state
    if n is None:
        n = _board.clock.now_us if _board is not None else 1
    h = 2166136261
    for ch in str(n) + (_board.node_id if _board is not None else ""):
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    _state = h or 1


def getrandbits(n):
    if n <= 0 or n > 32:
        raise ValueError("bits must be 1..32")
    return _next32() >> (32 - n)


def randrange(start, stop=None, step=1):
    if stop is None:
        start, stop = 0, start
    width = (stop - start + step - 1) // step if step > 0 else (start - stop - step - 1) // -step
    if width <= 0:
        raise ValueError("empty range")
    return start + step * (_next32() % width)


def randint(a, b):
    return randrange(a, b + 1)


def choice(sequence):
    if not sequence:
        raise IndexError("empty sequence")
    return sequence[_next32() % len(sequence)]


def random():
    return _next32() / 4294967296.0


def uniform(a, b):
    return a + (b - a) * random()
