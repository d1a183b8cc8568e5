# The fake chips' own randomness (MicroPython dialect): a xorshift32 (Marsaglia 2003, shifts
# 13, 17, 5) seeded with the FNV-1a hash of the chip's identity (board seed, node id, kind,
# bus or pin), so the same scenario seed gives the same numbers in CPython and in the WASI
# MicroPython, whatever else draws numbers.


def fnv(text):
    """32-bit FNV-1a of text, never 0 (a xorshift32 seed)."""
    h = 2166136261
    for ch in text:
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    return h or 1


class ChipRandom:
    """Mixin: the chip sets self._rng = fnv(its identity)."""

    def _next(self):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    def random(self):
        """Uniform in [0, 1)."""
        return self._next() / 4294967296.0

    def _gauss(self):
        # Irwin-Hall: the sum of 12 uniforms minus 6 has mean 0, sd 1.
        t = 0.0
        for _ in range(12):
            t += self.random()
        return t - 6.0
