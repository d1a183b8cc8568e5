# What every world model of the simulator shares (world_bins, world_air, world_water,
# world_road): time units, a seeded 32-bit generator and parameter helpers. MicroPython
# dialect, like the worlds: they run beside the fakes in both runtimes. Each world seeds the
# generator its own way (its histories are pinned by its tests); the draws are the same.
import math

DAY_S = 86400
HOUR_S = 3600
M32 = 0xFFFFFFFF


def mix32(x):
    # 32-bit avalanche mixer (the MurmurHash3 finaliser constants).
    x &= M32
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    x ^= x >> 16
    return x


def seed32(seed):
    """A 32-bit seed from an int of any size."""
    return mix32(mix32(seed) ^ mix32((seed >> 32) ^ 0x5BD1E995))


class XorShift32:
    """xorshift32 (Marsaglia 2003, shifts 13, 17, 5); a world's subclass sets self.x (never 0)
    from its seed and streams."""

    x = 0x6D2B79F5

    def u(self):
        """Uniform in [0, 1)."""
        x = self.x
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        self.x = x
        return x / 4294967296.0

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.u()

    def loguniform(self, lo, hi):
        return lo * math.exp(math.log(hi / lo) * self.u())

    def expo(self):
        """Exponential with mean 1."""
        return -math.log(1.0 - self.u())

    def gauss(self):
        """Standard normal (Box-Muller)."""
        r = math.sqrt(-2.0 * math.log(1.0 - self.u()))
        return r * math.cos(2.0 * math.pi * self.u())


def get(params, key, default):
    """A parameter, its default when absent or null."""
    v = params.get(key)
    return default if v is None else v


def intervals(spec, name):
    """Scheduled incidents [[start_h, dur_h], ...] as [(start_s, end_s), ...]."""
    out = []
    for item in spec or ():
        if len(item) != 2:
            raise ValueError("%s: each entry is [start_h, dur_h]" % name)
        s = float(item[0]) * HOUR_S
        d = float(item[1]) * HOUR_S
        if d < 0:
            raise ValueError("%s: negative duration" % name)
        out.append((s, s + d))
    return out
