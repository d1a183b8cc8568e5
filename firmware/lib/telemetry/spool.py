# The spool: accepted readings on flash until the broker has them.
#
# Records are appended to "spool.<gen>": a 0xA5 marker, the payload length (u16), the CRC-32
# of the payload (u32), then the payload (compact JSON with the reading's seq). "spool.pos"
# (written atomically) holds the generation, the offset of the first record not yet
# delivered, the count of readings dropped for lack of room, and the next seq once the log
# is emptied. A power cut can tear only the last record; open() cuts it off.
import binascii
import json
import os
import struct

from telemetry import atomic

_MARK = 0xA5
_HEAD = 7  # marker, length u16, crc32 u32
POS = "spool.pos"


class Spool:
    def __init__(self, budget=32768):
        self.budget = budget
        self.gen = 0
        self.pos = 0
        self.size = 0
        self.dropped = 0
        self.next_seq = 0
        self.count = 0  # records not yet delivered

    def _path(self, gen=None):
        return "spool.%d" % (self.gen if gen is None else gen)

    def open(self):
        try:
            st = atomic.read_json(POS)
        except ValueError:
            st = None  # a torn pos file cannot happen (atomic), but never trust flash blindly
        if isinstance(st, dict):
            self.gen = st.get("g", 0)
            self.pos = st.get("pos", 0)
            self.dropped = st.get("drop", 0)
            self.next_seq = st.get("seq", 0)
        self._sweep()
        good, last_seq, count = self._scan()
        if good < self.size:
            self._truncate(good)
        if last_seq >= self.next_seq:
            self.next_seq = last_seq + 1
        self.count = count
        return self

    def _sweep(self):
        # Leftovers of a generation change a power cut interrupted: the generation before ours
        # (not yet removed) or after it (written, but spool.pos not yet updated).
        for gen in (self.gen - 1, self.gen + 1):
            try:
                os.remove(self._path(gen))
            except OSError:
                pass

    def _records(self, start):
        """(offset after, payload) for each intact record from start; stops at damage.
        Streams record by record: the heap never holds the whole log."""
        try:
            f = open(self._path(), "rb")
        except OSError:
            self.size = 0
            return
        try:
            self.size = f.seek(0, 2)
            off = start
            f.seek(off)
            while off + _HEAD <= self.size:
                head = f.read(_HEAD)
                mark, n, crc = struct.unpack("<BHI", head)
                end = off + _HEAD + n
                if mark != _MARK or end > self.size:
                    return
                payload = f.read(n)
                if binascii.crc32(payload) != crc:
                    return
                yield end, payload
                off = end
        finally:
            f.close()

    def _scan(self):
        good = 0
        last = -1
        count = 0
        for end, payload in self._records(0):
            good = end
            try:
                last = json.loads(payload)["seq"]
            except (ValueError, KeyError, TypeError):
                pass
            if end > self.pos:
                count += 1
        return good, last, count

    def _truncate(self, good):
        with open(self._path(), "rb") as f:
            data = f.read(good)
        atomic.write_bytes(self._path(), data)
        self.size = good
        if self.pos > good:
            self.pos = good

    def _save_pos(self):
        atomic.write_json(POS, {"g": self.gen, "pos": self.pos, "drop": self.dropped, "seq": self.next_seq})

    def accept(self, reading):
        """Give the reading the next seq and put it on flash. Returns the seq. The reading
        counts as accepted only once this returns."""
        seq = self.next_seq
        reading["seq"] = seq
        payload = json.dumps(reading).encode()
        rec = struct.pack("<BHI", _MARK, len(payload), binascii.crc32(payload)) + payload
        if self.size + len(rec) > self.budget:
            self._make_room(len(rec))
        with open(self._path(), "ab") as f:
            f.write(rec)
        self.size += len(rec)
        self.count += 1
        self.next_seq = seq + 1
        return seq

    def _make_room(self, need):
        # Drop the oldest undelivered readings, counting them, then compact.
        for end, _ in self._records(self.pos):
            if self.size - end + need <= self.budget:
                self.pos = end
                self.dropped += 1
                self.count -= 1
                break
            self.pos = end
            self.dropped += 1
            self.count -= 1
        self._compact()

    def _compact(self):
        try:
            with open(self._path(), "rb") as f:
                f.seek(self.pos)
                rest = f.read()
        except OSError:
            rest = b""
        old = self._path()
        new_gen = self.gen + 1
        atomic.write_bytes(self._path(new_gen), rest)
        self.gen = new_gen
        self.pos = 0
        self.size = len(rest)
        self._save_pos()
        try:
            os.remove(old)
        except OSError:
            pass

    def pending(self, limit=50):
        """Up to `limit` undelivered readings as [(offset after, payload bytes)]."""
        out = []
        for end, payload in self._records(self.pos):
            out.append((end, payload))
            if len(out) >= limit:
                break
        return out

    def ack(self, upto):
        """Everything before offset `upto` is delivered."""
        n = 0
        for end, _ in self._records(self.pos):
            if end > upto:
                break
            n += 1
        self.pos = upto
        self.count -= n
        if self.pos >= self.size:
            # All delivered: start a fresh generation, keeping the seq in the pos file.
            old = self._path()
            self.gen += 1
            self.pos = 0
            self.size = 0
            self._save_pos()
            try:
                os.remove(old)
            except OSError:
                pass
        else:
            self._save_pos()
