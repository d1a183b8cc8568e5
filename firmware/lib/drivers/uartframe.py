# The frame finder of the UART particle sensors (drivers/pms5003.py, drivers/sds011.py): their
# data sheets give fixed-length frames behind a header, checked by a sum. Bytes come in pieces
# of any size; a partial frame is kept across feed() calls; bytes that cannot start a frame
# are skipped; a candidate with a wrong check is counted in `bad` and dropped, and the search
# resumes at its second byte (a real frame may start inside it). Never raises.


class FrameParser:
    """The subclass gives PREFIX (how many leading bytes _prefix_ok judges), _prefix_ok(pos, b)
    (can byte b stand at position pos of a frame?), _check(buf) (the frame's sum) and
    _frame(buf, out) (a valid frame: append its reading to out, count it)."""

    PREFIX = 2

    def __init__(self, frame_len):
        self._buf = bytearray(frame_len)
        self._n = 0
        self.frames = 0  # valid data frames
        self.bad = 0  # header right, check wrong
        self.skipped = 0  # bytes thrown away while looking for a header

    # The subclass's framing:
    def _prefix_ok(self, pos, b):
        raise NotImplementedError

    def _check(self, buf):
        raise NotImplementedError

    def _frame(self, buf, out):
        raise NotImplementedError

    def reset(self):
        """Forget a partial frame (after flushing the UART, say)."""
        self._n = 0

    def feed(self, data, n=-1):
        """Feed bytes (the first n of data when n >= 0); returns the readings of the frames
        completed by them, oldest first."""
        out = []  # type: list[tuple]
        if data is None:
            return out
        if n < 0 or n > len(data):
            n = len(data)
        buf = self._buf
        size = len(buf)
        for i in range(n):
            k = self._n
            b = data[i]
            buf[k] = b
            k += 1
            self._n = k
            if k <= self.PREFIX and not self._prefix_ok(k - 1, b):
                self._resync()
            elif k == size:
                if self._check(buf):
                    self._frame(buf, out)
                    self._n = 0
                else:
                    self.bad += 1
                    self._resync()
        return out

    def _resync(self):
        # Drop the first byte, then as many as needed for the rest to be a valid frame prefix.
        buf = self._buf
        n = self._n
        s = 1
        while s < n:
            ok = True
            j = 0
            while j < self.PREFIX and s + j < n:
                if not self._prefix_ok(j, buf[s + j]):
                    ok = False
                    break
                j += 1
            if ok:
                break
            s += 1
        if s > n:
            s = n
        for j in range(n - s):
            buf[j] = buf[j + s]
        self._n = n - s
        self.skipped += s
