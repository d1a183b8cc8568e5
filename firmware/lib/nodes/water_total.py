# Water totals that survive deep sleep, resets and power cuts: forward and reverse pulse counts
# (ints; litres = pulses * ml_per_pulse / 1000 where they are reported).
#
# Between saves the running totals live in a dict the caller keeps in RTC memory (the node's
# RTC state: it survives deep sleep and resets, not a power cut). Saves go to flash as a ring of
# fixed-size records in one preallocated file: record i of `slots`, 16 bytes each,
#   seq u32 | fwd u32 | rev u32 | crc32 of the 12 bytes before, xor _TAG     (little-endian)
# written in place at slot seq % slots, so the slots take turns (writes per slot = saves /
# slots). On load the valid record with the highest seq wins. A power cut during a save can
# tear only the slot being written, which held the oldest record: the newest complete record
# (in another slot) is still there. The file is created, or rebuilt when its size is wrong
# (a torn creation, a different slot count), by writing a temporary file and renaming it.
# On LittleFS (the ESP32 port's filesystem) an in-place write is copy-on-write and the
# filesystem spreads block erases itself (block_cycles = 100 in extmod/vfs_lfsx.c); the ring
# still gives the torn-write guarantee without a rename per save, and an even use of its slots.
#
# Saving policy: maybe_save(now_s) saves when `every_pulses` pulses are unsaved, or when the
# oldest unsaved change is `every_s` seconds old, whichever comes first; room() says how many
# more pulses may come before a save is due, so the pulse input can return in time (see
# drivers/pulse.py wait(max_pulses)). A power cut then loses at most every_pulses pulses
# (every_pulses - 1 waiting, one more while the save that would have kept them is written),
# and never counts a pulse that did not happen: what loads is always a total that was counted.
import binascii
import struct

from telemetry import atomic

_REC = 16
_TAG = 0x57544F54  # "WTOT": a record of another format fails the check
_MAX = 0xFFFFFFFF


def _pack(seq, fwd, rev):
    body = struct.pack("<III", seq & _MAX, fwd & _MAX, rev & _MAX)
    return body + struct.pack("<I", (binascii.crc32(body) ^ _TAG) & _MAX)


def _unpack(rec):
    """(seq, fwd, rev) of a valid record, else None."""
    if len(rec) != _REC:
        return None
    crc = struct.unpack("<I", rec[12:16])[0]
    if (binascii.crc32(rec[:12]) ^ _TAG) & _MAX != crc:
        return None
    return struct.unpack("<III", rec[:12])


class Totals:
    """path: the ring file on flash; slots: records in it; every_pulses / every_s: the saving
    policy; state: a dict kept in RTC memory by the caller (the node's RTC state), or None to
    keep the running totals in RAM only."""

    def __init__(self, path="water.tot", slots=16, every_pulses=100, every_s=3600, state=None):
        if slots < 2 or slots > 255:
            raise ValueError("slots")
        if every_pulses < 1:
            raise ValueError("every_pulses")
        self.path = path
        self.slots = slots
        self.every_pulses = every_pulses
        self.every_s = every_s
        self.state = state if state is not None else {}
        self.fwd = 0
        self.rev = 0
        self.seq = 0  # saves so far (the seq of the newest record on flash)
        self.saved_fwd = 0
        self.saved_rev = 0
        self.dirty_s = None  # time of the oldest unsaved change

    # ---- flash ---------------------------------------------------------------------------
    def _read(self):
        """(best record or None, file size)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None, -1
        best = None
        for i in range(len(data) // _REC):
            r = _unpack(data[i * _REC:(i + 1) * _REC])
            if r is not None and (best is None or r[0] > best[0]):
                best = r
        return best, len(data)

    def _rebuild(self, best):
        buf = bytearray(self.slots * _REC)
        if best is not None:
            at = (best[0] % self.slots) * _REC
            buf[at:at + _REC] = _pack(best[0], best[1], best[2])
        atomic.write_bytes(self.path, buf)

    def load(self):
        """Recover the totals: the newest valid record on flash, or the RTC copy where that is
        newer (after a deep sleep or a reset). Returns dict(fwd, rev, saves)."""
        best, size = self._read()
        if size != self.slots * _REC:
            self._rebuild(best)
        if best is None:
            best = (0, 0, 0)
        self.seq, self.saved_fwd, self.saved_rev = best
        fwd, rev = self.saved_fwd, self.saved_rev
        self.dirty_s = None
        rtc = self.state.get("wt")
        if isinstance(rtc, list) and len(rtc) == 3:
            # Each copy only ever holds counted pulses, so the larger is the better one.
            if isinstance(rtc[0], int) and rtc[0] > fwd:
                fwd = rtc[0]
            if isinstance(rtc[1], int) and rtc[1] > rev:
                rev = rtc[1]
            if isinstance(rtc[2], int):
                self.dirty_s = rtc[2]
        self.fwd = fwd
        self.rev = rev
        if self.pending() == 0:
            self.dirty_s = None
        self._keep()
        return {"fwd": fwd, "rev": rev, "saves": self.seq}

    def _keep(self):
        self.state["wt"] = [self.fwd, self.rev, self.dirty_s]

    def save(self):
        seq = self.seq + 1
        rec = _pack(seq, self.fwd, self.rev)
        try:
            f = open(self.path, "r+b")
        except OSError:
            self._rebuild(None)
            f = open(self.path, "r+b")
        try:
            f.seek((seq % self.slots) * _REC)
            f.write(rec)
        finally:
            f.close()
        self.seq = seq
        self.saved_fwd = self.fwd
        self.saved_rev = self.rev
        self.dirty_s = None
        self._keep()

    # ---- counting ------------------------------------------------------------------------
    def add(self, fwd, rev=0):
        """Book pulses counted since the last add (ints >= 0)."""
        if fwd <= 0 and rev <= 0:
            return
        self.fwd += fwd
        self.rev += rev
        self._keep()

    def pending(self):
        """Pulses counted but not on flash yet."""
        return (self.fwd - self.saved_fwd) + (self.rev - self.saved_rev)

    def room(self):
        """Pulses that may still come before a save is due (>= 1)."""
        r = self.every_pulses - self.pending()
        return r if r > 0 else 1

    def maybe_save(self, now_s, force=False):
        """Save if the policy says so (or force, with anything unsaved). True if it saved."""
        if self.pending() <= 0:
            self.dirty_s = None
            return False
        if self.dirty_s is None:
            self.dirty_s = now_s
            self._keep()
        age = now_s - self.dirty_s
        if force or self.pending() >= self.every_pulses or age >= self.every_s or age < 0:
            self.save()
            return True
        return False

    def writes_per_slot(self):
        """The most writes any slot has had: saves spread round-robin over the slots."""
        return (self.seq + self.slots - 1) // self.slots

    def volume_ml(self, ml_per_pulse):
        """(forward, reverse) volume in millilitres, as ints (ml_per_pulse from the config)."""
        return self.fwd * ml_per_pulse, self.rev * ml_per_pulse
