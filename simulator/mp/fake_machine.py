"""Fake of MicroPython's `machine` module for the ESP32 port, in virtual time.

Written in the MicroPython dialect: it runs under CPython (one copy per node, loaded by
simulator/loader.py) and inside the WASI build of MicroPython. Names, signatures and constant
values follow the micropython-esp32-stubs (machine.pyi), implementing less where the stub has
more; behaviour follows ports/esp32 and extmod. Every blocking call advances the board's
virtual clock through Board.advance(); nothing waits on the wall clock.

Conventions for chips, worlds and scenarios that drive this fake (all state is on the Board):

- Pins: board.pins[pid] (see Board.pin for the fields). A chip drives an input with
  board.pin_edge(pid, 0/1/None) (None: released, the pull decides) or supplies a level function
  in board.pin_inputs[pid]; the node's own outputs are in "value_out"/"mode" and a chip can
  listen with board.pins[pid]["watch"] = callable(board, pid, level). Pin IRQ handlers are soft:
  queued on board.irq_queue and run at the end of the next Board.advance() (like mp_sched).
  GPIO34-39 are input-only and have no pulls. Level IRQ triggers (WAKE_LOW/WAKE_HIGH without
  wake=) are accepted but never fire.
- Pin.irq(trigger=Pin.WAKE_LOW|WAKE_HIGH, wake=machine.SLEEP|DEEPSLEEP) configures the ESP32's
  single ext0 wake pin, as the port does: fields "wake", "wake_level", "wake_boot" (the boot it
  was set in; it is RAM state) of the pin dict. lightsleep() honours it and
  esp32.wake_on_ext0/ext1 (board.extra["wake_ext0"/"wake_ext1"]).
- ADC: board.adc_sources[pid](board) -> microvolts at the pin; without a source the pin's digital
  level (0 V or 3.3 V). Full scale per attenuation in _ADC_FULL_MV; readings clamp there.
- I2C: board.i2c_devices[bus][addr] is a device with i2c_write(board, data: bytes) and
  i2c_read(board, n) -> bytes (short reads are padded with 0xFF, as a released bus reads).
  A register access (readfrom_mem) is a write of the register address then a read. The bus id
  of hardware I2C(id, ...) is `id` (0 or 1); of SoftI2C(scl, sda) it is ("soft", scl, sda) with
  scl/sda the pin ids. A missing address raises OSError(ENODEV) (ports/esp32/machine_i2c.c maps
  the NACK, ESP_FAIL, to MP_ENODEV); a device may raise OSError itself to model faults.
  A transaction takes 9 bit times per byte on the wire, address bytes included.
- UART: board.uart_devices[id] has uart_write(board, data), uart_take(board) -> bytes that have
  arrived by now (handed over once) and uart_next_at(board) -> sim us of the next byte or None.
  Bytes beyond rxbuf (default 256) are dropped (newest first). A character takes
  1 + bits + parity + stop bit times.
- Timer callbacks and WDT: virtual time through board.call_at; the board's advance() raises
  WatchdogReset when starved. State that lives in RAM (timers, ADC settings, CPU frequency,
  disable_irq) is kept per boot in board.extra["machine"].
"""
import errno
import simboard

_board = None

# ---- module constants (values of the ESP32 stubs; simboard uses the same) ------------------
PWRON_RESET = simboard.PWRON_RESET
HARD_RESET = simboard.HARD_RESET
WDT_RESET = simboard.WDT_RESET
DEEPSLEEP_RESET = simboard.DEEPSLEEP_RESET
SOFT_RESET = simboard.SOFT_RESET
PIN_WAKE = simboard.PIN_WAKE
EXT0_WAKE = simboard.EXT0_WAKE
EXT1_WAKE = simboard.EXT1_WAKE
TIMER_WAKE = simboard.TIMER_WAKE
TOUCHPAD_WAKE = simboard.TOUCHPAD_WAKE
ULP_WAKE = simboard.ULP_WAKE
SLEEP = 2
DEEPSLEEP = 4

# ESP32 GPIO numbers (ESP32 datasheet): which exist, which are input-only, which are RTC GPIOs
# (usable for ext0/ext1 wake), which have an ADC channel (ADC1: 32-39, ADC2: the others).
_GPIOS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23,
          25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)
_RTC_GPIOS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)
_ADC2_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)

# Input voltage (mV) that reads full scale at each attenuation (ATTN_0DB, 2_5DB, 6DB, 11DB).
# Espressif gives 0-950 / 0-1250 / 0-1750 / 0-3100 mV as the ADC's theoretical ranges (ESP32-S3
# ADC range FAQ; measured ESP32 boards saturate near 1.1 V and 3.1 V); the ESP32 datasheet
# recommends 100-950 / 100-1250 / 150-1750 / 150-2450 mV for accuracy. The fake is ideal and
# linear from 0 V to these values and clamps above.
_ADC_FULL_MV = (950, 1250, 1750, 3100)

_CPU_HZ_DEFAULT = 160000000  # ESP32_GENERIC: CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_160
_IDLE_MAX_US = 1000  # machine.idle(): resumes at the next interrupt, at most 1 ms later
_WAKE_POLL_US = 1000000  # lightsleep() without a timer looks at its wake pins this often


def _attach(board):
    global _board
    _board = board
    hooks = getattr(board, "boot_hooks", None)
    if hooks is not None and _boot_hook not in hooks:
        hooks.append(_boot_hook)


def _boot_hook(board):
    # A reset returns every GPIO to its default (input, no pull, no PWM, no wake config).
    for pid in board.pins:
        p = board.pins[pid]
        old = board.pin_level(pid)
        p["mode"] = None
        p["pull"] = None
        p["value_out"] = 0
        p["wake"] = None
        p["pwm"] = None
        if p.get("watch") is not None and board.pin_level(pid) != old:
            p["watch"](board, pid, board.pin_level(pid))


def _ram():
    # The module's state that a reset forgets: kept per boot on the board.
    b = _board
    r = b.extra.get("machine")
    if r is None or r["boots"] != b.boots:
        r = {"boots": b.boots, "timers": {}, "adc_bits": {}, "adc_atten": {},
             "cpu_hz": _CPU_HZ_DEFAULT}
        b.extra["machine"] = r
    return r


def _oserror(code):
    # MicroPython: OSError(code).errno == code. CPython needs (code, text) to set .errno.
    e = OSError(code)
    if getattr(e, "errno", None) == code:
        return e
    name = "Errno"
    for k in ("ENODEV", "ETIMEDOUT", "EIO", "EAGAIN"):
        if getattr(errno, k, None) == code:
            name = k
    return OSError(code, name)


def _step(target_us, state=None):
    # Advance towards target_us, stopping at the next timeline event (which then fires), so a
    # caller polling some condition sees every change the world makes.
    b = _board
    now = b.clock.now_us
    tl = b.timeline
    if tl and tl[0][0] < target_us:
        target_us = tl[0][0]
    if target_us < now:
        target_us = now
    b.advance(target_us - now, state)


def _pin_id(p):
    if isinstance(p, Pin):
        return p._id
    return p


def _bytes(buf):
    if isinstance(buf, str):
        return buf.encode()
    return bytes(buf)


# ---- Pin -------------------------------------------------------------------------------------
class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        if isinstance(id, Pin):
            id = id._id
        if isinstance(id, int) and id not in _GPIOS:
            raise ValueError("invalid pin")
        self._id = id
        _board.pin(id)
        if mode != -1 or pull != -1 or value is not None or drive is not None:
            self.init(mode, pull, value=value, drive=drive, alt=alt)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        b = _board
        pid = self._id
        if value is not None:  # the port sets the level before the mode
            b.pin_update(pid, "value_out", 1 if value else 0)
        if drive is not None:
            b.pin(pid)["drive"] = drive
        if mode is not None and mode != -1:
            if mode not in (1, 3, 7):
                raise ValueError("invalid pin mode")
            if mode != 1 and pid in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            b.pin_update(pid, "mode", mode)
        if pull != -1:  # None: no pull
            b.pin_update(pid, "pull", pull)

    def value(self, x=None):
        if x is None:
            return _board.pin_level(self._id)
        _board.pin_update(self._id, "value_out", 1 if x else 0)

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        p = _board.pin(self._id)
        _board.pin_update(self._id, "value_out", 0 if p["value_out"] else 1)

    def mode(self, mode=-1):
        p = _board.pin(self._id)
        if mode == -1:
            return p["mode"] if p["mode"] is not None else 1
        self.init(mode)

    def pull(self, pull=-1):
        p = _board.pin(self._id)
        if pull == -1:
            return p["pull"]
        self.init(-1, pull)

    def drive(self, drive=-1):
        p = _board.pin(self._id)
        if drive == -1:
            return p.get("drive", 2)
        p["drive"] = drive

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        b = _board
        pid = self._id
        p = b.pin(pid)
        if (trigger == 4 or trigger == 5) and wake is not None:
            if not isinstance(wake, int) or wake < 2 or wake > 7:
                raise ValueError("bad wake value")
            if pid not in _RTC_GPIOS:
                raise ValueError("invalid pin for wake")
            for other in b.pins:  # the ESP32 has one ext0 wake pin
                q = b.pins[other]
                if other != pid and q.get("wake") and q.get("wake_boot") == b.boots:
                    raise ValueError("no resources")
            p["wake"] = wake
            p["wake_level"] = 0 if trigger == 4 else 1
            p["wake_boot"] = b.boots
        else:
            p["wake"] = None
            if handler is None:
                p["irq"] = None
                p["trigger"] = 0
            else:
                p["irq"] = (handler, self)
                p["trigger"] = trigger if trigger <= 3 else 0
        return _PinIRQ(self)

    def __repr__(self):
        return "Pin(%s)" % (self._id,)


class _PinIRQ:
    def __init__(self, pin):
        self._pin = pin

    def __call__(self):
        h = _board.pin(self._pin._id)["irq"]
        if h is not None:
            h[0](h[1])

    def trigger(self):
        return _board.pin(self._pin._id)["trigger"]


class Signal(Pin):
    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None, invert=False):
        if isinstance(id, Pin):
            # Signal(pin_obj, invert=False): the second positional argument is `invert`.
            if mode != -1:
                invert = mode
            self._id = id._id
        else:
            Pin.__init__(self, id, mode, pull, value=value, drive=drive, alt=alt)
        self._invert = 1 if invert else 0

    def value(self, x=None):
        if x is None:
            return Pin.value(self) ^ self._invert
        Pin.value(self, (1 if x else 0) ^ self._invert)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


# ---- ADC -------------------------------------------------------------------------------------
class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, id, *, sample_ns=None, atten=-1):
        pid = _pin_id(id)
        if pid in _ADC1_PINS:
            self._block = 1
        elif pid in _ADC2_PINS:
            self._block = 2
        else:
            raise ValueError("invalid pin")
        self._id = pid
        self.init(sample_ns=sample_ns, atten=atten)

    def init(self, *, sample_ns=None, atten=-1):
        if atten is not None and atten != -1:
            self.atten(atten)
        else:
            _ram()["adc_atten"].setdefault(self._id, 0)  # first use: ATTN_0DB

    def atten(self, atten):
        if atten not in (0, 1, 2, 3):
            raise ValueError("invalid atten")
        _ram()["adc_atten"][self._id] = atten

    def width(self, bits):
        if bits < 9 or bits > 12:
            raise ValueError("invalid bits")
        _ram()["adc_bits"][self._block] = bits

    def deinit(self, *args, **kwargs):
        pass

    def _bits(self):
        return _ram()["adc_bits"].get(self._block, 12)

    def _full_uv(self):
        return _ADC_FULL_MV[_ram()["adc_atten"].get(self._id, 0)] * 1000

    def _raw(self):
        b = _board
        src = b.adc_sources.get(self._id)
        if src is not None:
            uv = int(src(b))
        else:
            uv = b.pin_level(self._id) * 3300000
        full = self._full_uv()
        if uv < 0:
            uv = 0
        if uv > full:
            uv = full
        top = (1 << self._bits()) - 1
        return (uv * top + full // 2) // full

    def read(self):
        return self._raw()

    def read_u16(self):
        # ports/esp32/machine_adc.c: scale the raw reading to 16 bits (Taylor expansion).
        raw = self._raw()
        bits = self._bits()
        return (raw << (16 - bits)) | (raw >> (2 * bits - 16))

    def read_uv(self):
        # The port converts with the eFuse calibration to whole millivolts, then x1000.
        raw = self._raw()
        top = (1 << self._bits()) - 1
        full_mv = self._full_uv() // 1000
        return ((raw * full_mv + top // 2) // top) * 1000


# ---- I2C -------------------------------------------------------------------------------------
def _memaddr(memaddr, addrsize):
    # extmod/machine_i2c.c fill_memaddr_buf: big-endian, addrsize a multiple of 8 up to 32.
    if addrsize & 7 or addrsize > 32 or addrsize < 0:
        raise ValueError("invalid addrsize")
    out = bytearray()
    i = addrsize - 8
    while i >= 0:
        out.append((memaddr >> i) & 0xFF)
        i -= 8
    return bytes(out)


def _fit(data, n):
    data = bytes(data) if data else b""
    if len(data) < n:
        return data + b"\xff" * (n - len(data))
    return data[:n]


class I2C:
    # The port also takes I2C(id) with default pins (18/19, 25/26); the fake requires scl and sda
    # (the stub's overloads take them together, and pins come from the board profile).
    def __init__(self, id, *, scl, sda, freq=400000, timeout=50000):
        if id != 0 and id != 1:
            raise ValueError("I2C(%s) doesn't exist" % (id,))
        self._bus = id
        self._scl = _pin_id(scl)
        self._sda = _pin_id(sda)
        self._freq = freq
        self._timeout = timeout

    def init(self, *, freq=400000):
        self._freq = freq

    def deinit(self):
        pass

    def _wire(self, nbytes):
        # 9 bit times (8 data + ACK) per byte on the wire.
        f = self._freq if self._freq > 0 else 1
        _board.advance((nbytes * 9 * 1000000 + f - 1) // f)

    def _devs(self):
        return _board.i2c_devices.get(self._bus) or {}

    def _dev(self, addr):
        dev = self._devs().get(addr)
        if dev is None:
            self._wire(1)  # the address byte goes out and nobody ACKs it
            raise _oserror(errno.ENODEV)
        return dev

    def scan(self):
        devs = self._devs()
        found = []
        for addr in range(0x08, 0x78):
            if addr in devs:
                found.append(addr)
        self._wire(0x78 - 0x08)
        return found

    def writeto(self, addr, buf, stop=True):
        dev = self._dev(addr)
        data = _bytes(buf)
        self._wire(1 + len(data))
        if data:
            dev.i2c_write(_board, data)
        return len(data)

    def writevto(self, addr, vector, stop=True):
        data = b""
        for buf in vector:
            data += _bytes(buf)
        return self.writeto(addr, data, stop)

    def readfrom(self, addr, nbytes, stop=True):
        dev = self._dev(addr)
        data = _fit(dev.i2c_read(_board, nbytes), nbytes)
        self._wire(1 + nbytes)
        return data

    def readfrom_into(self, addr, buf, stop=True):
        data = self.readfrom(addr, len(buf), stop)
        for i in range(len(data)):
            buf[i] = data[i]

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        reg = _memaddr(memaddr, addrsize)
        dev = self._dev(addr)
        self._wire(1 + len(reg))
        if reg:
            dev.i2c_write(_board, reg)
        data = _fit(dev.i2c_read(_board, nbytes), nbytes)
        self._wire(1 + nbytes)
        return data

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        data = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)
        for i in range(len(data)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        data = _memaddr(memaddr, addrsize) + _bytes(buf)
        dev = self._dev(addr)
        self._wire(1 + len(data))
        if data:
            dev.i2c_write(_board, data)

    # Primitive operations: the hardware I2C of the ESP32 port has none.
    def start(self):
        raise OSError("I2C operation not supported")

    def stop(self):
        raise OSError("I2C operation not supported")

    def readinto(self, buf, nack=True):
        raise OSError("I2C operation not supported")

    def write(self, buf):
        raise OSError("I2C operation not supported")


class SoftI2C(I2C):
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._scl = _pin_id(scl)
        self._sda = _pin_id(sda)
        self._bus = ("soft", self._scl, self._sda)
        self._freq = freq
        self._timeout = timeout
        self._txn = None  # [addr or None, rw, device or None, pending write bytes]

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        self.__init__(scl, sda, freq=freq, timeout=timeout)

    def _flush(self):
        t = self._txn
        if t is not None and t[2] is not None and t[3]:
            t[2].i2c_write(_board, bytes(t[3]))
            t[3] = bytearray()

    def start(self):
        self._flush()  # a repeated start ends the write phase
        self._txn = [None, 0, None, bytearray()]
        self._wire(0)

    def stop(self):
        self._flush()
        self._txn = None

    def write(self, buf):
        # Returns the number of bytes ACKed; stops at the first NACK, as extmod does.
        data = _bytes(buf)
        t = self._txn
        acks = 0
        for byte in data:
            if t is None:
                break
            if t[0] is None:
                dev = self._devs().get(byte >> 1)
                if dev is None:
                    break
                t[0] = byte >> 1
                t[1] = byte & 1
                t[2] = dev
            elif t[1] == 0:
                t[3].append(byte)
            else:
                break
            acks += 1
        self._wire(len(data) if acks == len(data) else acks + 1)
        return acks

    def readinto(self, buf, nack=True):
        t = self._txn
        n = len(buf)
        if t is not None and t[2] is not None and t[1] == 1:
            data = _fit(t[2].i2c_read(_board, n), n)
        else:
            data = b"\xff" * n
        self._wire(n)
        for i in range(n):
            buf[i] = data[i]


# ---- UART ------------------------------------------------------------------------------------
class UART:
    INV_RX = 4
    INV_TX = 32
    INV_RTS = 64
    INV_CTS = 8
    RTS = 1
    CTS = 2
    IRQ_RX = 1
    IRQ_BREAK = 2
    IRQ_RXIDLE = 4096

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, *, tx=None, rx=None,
                 txbuf=None, rxbuf=None, timeout=None, timeout_char=None, invert=None,
                 flow=None, rts=None, cts=None):
        if id not in (0, 1, 2):
            raise ValueError("UART(%s) does not exist" % (id,))
        self._id = id
        self._baud = 9600
        self._bits = 8
        self._parity = None
        self._stop = 1
        self._timeout = 0
        self._timeout_char = 0
        self._rxbuf = 256
        self._rx = bytearray()
        self._dropped = 0  # bytes lost to a full rx buffer
        self.init(baudrate, bits, parity, stop, tx=tx, rx=rx, txbuf=txbuf, rxbuf=rxbuf,
                  timeout=timeout, timeout_char=timeout_char, invert=invert, flow=flow,
                  rts=rts, cts=cts)

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, *, tx=None, rx=None,
             txbuf=None, rxbuf=None, timeout=None, timeout_char=None, invert=None, flow=None,
             rts=None, cts=None):
        if baudrate <= 0:
            raise ValueError("invalid baudrate")
        if bits < 5 or bits > 8:
            raise ValueError("invalid data bits")
        if stop != 1 and stop != 2:
            raise ValueError("invalid stop bits")
        self._baud = baudrate
        self._bits = bits
        self._parity = parity
        self._stop = stop
        if rxbuf is not None:
            self._rxbuf = rxbuf
        if timeout is not None:
            self._timeout = timeout
        if timeout_char is not None:
            self._timeout_char = timeout_char

    def deinit(self):
        self._rx = bytearray()

    def _char_us(self, n):
        bits = 1 + self._bits + (0 if self._parity is None else 1) + self._stop
        return (n * bits * 1000000 + self._baud - 1) // self._baud

    def _pull(self):
        # Move what has arrived into the rx buffer; a full buffer drops the newest bytes.
        dev = _board.uart_devices.get(self._id)
        if dev is None:
            return
        data = dev.uart_take(_board)
        if not data:
            return
        room = self._rxbuf - len(self._rx)
        if room < 0:
            room = 0
        if len(data) > room:
            self._dropped += len(data) - room
            data = data[:room]
        self._rx += data

    def _wait(self, n):
        # Wait (in virtual time) until n bytes are buffered or `timeout` ms have passed.
        b = _board
        self._pull()
        if len(self._rx) >= n or self._timeout <= 0:
            return
        deadline = b.clock.now_us + self._timeout * 1000
        while len(self._rx) < n:
            now = b.clock.now_us
            if now >= deadline:
                return
            target = deadline
            dev = b.uart_devices.get(self._id)
            if dev is not None:
                nxt = dev.uart_next_at(b)
                if nxt is not None:
                    if nxt <= now:
                        nxt = now + 1
                    if nxt < target:
                        target = nxt
            _step(target)
            self._pull()

    def _read_once(self, n):
        # One driver read (uart_read_bytes): up to n bytes, None if none came in time.
        self._wait(n)
        if not self._rx:
            return None
        data = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return data

    def any(self):
        self._pull()
        return len(self._rx)

    def read(self, nbytes=-1):
        if nbytes is None or nbytes < 0:
            # py/stream.c readall: read chunks until a read brings nothing.
            out = b""
            while True:
                chunk = self._read_once(256)
                if chunk is None:
                    break
                out += chunk
            return out if out else None
        if nbytes == 0:
            return b""
        return self._read_once(nbytes)

    def readinto(self, buf, nbytes=-1):
        n = len(buf)
        if nbytes is not None and 0 <= nbytes < n:
            n = nbytes
        if n == 0:
            return 0
        data = self._read_once(n)
        if data is None:
            return None
        for i in range(len(data)):
            buf[i] = data[i]
        return len(data)

    def readline(self):
        # py/stream.c unbuffered readline: byte by byte, each read with the timeout.
        out = b""
        while True:
            c = self._read_once(1)
            if c is None:
                break
            out += c
            if c == b"\n":
                break
        return out if out else None

    def write(self, buf):
        data = _bytes(buf)
        _board.advance(self._char_us(len(data)))
        dev = _board.uart_devices.get(self._id)
        if dev is not None and data:
            dev.uart_write(_board, data)
        return len(data)

    def flush(self):
        pass  # write() returns once the bytes are out

    def txdone(self):
        return True

    def sendbreak(self):
        _board.advance(self._char_us(1) * 13 // 10 + 1)
        dev = _board.uart_devices.get(self._id)
        brk = getattr(dev, "uart_break", None) if dev is not None else None
        if brk is not None:
            brk(_board)


# ---- Timer -----------------------------------------------------------------------------------
class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, *, mode=1, period=None, freq=None, tick_hz=None, callback=None,
                 hard=None):
        if id not in (0, 1, 2, 3):
            raise ValueError("invalid Timer number")
        self._id = id
        self._item = None
        self._cb = None
        self._mode = 1
        self._period_us = 0
        self._start_us = 0
        self._boot = -1
        if (period is not None or freq is not None or tick_hz is not None
                or callback is not None or mode != 1):
            self.init(mode=mode, period=period, freq=freq, tick_hz=tick_hz, callback=callback,
                      hard=hard)

    def init(self, *, mode=1, period=None, freq=None, tick_hz=None, callback=None, hard=None):
        self.deinit()
        timers = _ram()["timers"]
        other = timers.get(self._id)
        if other is not None and other is not self:
            other.deinit()  # one hardware timer per id
        timers[self._id] = self
        if freq is not None:
            if freq <= 0:
                raise ValueError("invalid freq")
            us = int(1000000 / freq + 0.5)
        else:
            ticks = 0xFFFFFFFF if period is None else period
            hz = 1000 if tick_hz is None else tick_hz
            us = ticks * 1000000 // hz
        if us < 1:
            us = 1
        self._mode = mode
        self._cb = callback
        self._period_us = us
        self._boot = _board.boots
        self._arm(_board.clock.now_us)

    def _arm(self, start_us):
        self._start_us = start_us
        self._item = _board.call_at(start_us + self._period_us, self._fire)

    def _fire(self, board):
        self._item = None
        if board.boots != self._boot:
            return  # the timer died with the reset
        if self._mode == 1:
            self._arm(self._start_us + self._period_us)
        if self._cb is not None:
            board.irq_queue.append((self._cb, self))

    def deinit(self):
        if self._item is not None:
            _board.cancel(self._item)
            self._item = None

    def value(self, *args, **kwargs):
        # Milliseconds into the current period (the port reads the counter in ms).
        if self._item is None:
            return 0
        return (_board.clock.now_us - self._start_us) // 1000


# ---- RTC -------------------------------------------------------------------------------------
class RTC:
    def __init__(self, id=0, *, datetime=None):
        if datetime is not None:
            self.datetime(datetime)

    def init(self, datetime=None):
        if datetime is not None:
            self.datetime(datetime)

    def datetime(self, datetimetuple=None):
        b = _board
        if datetimetuple is None:
            s, us = b.rtc_seconds_us()
            t = simboard.seconds_to_tuple(s)
            # (year, month, day, weekday, hours, minutes, seconds, subseconds=us)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], us)
        t = datetimetuple
        if len(t) != 8:
            raise ValueError("requested length 8 but object has length %d" % len(t))
        secs = simboard.tuple_to_seconds(t[0], t[1], t[2], t[4], t[5], t[6])
        b.set_rtc_seconds(secs, t[7])

    def memory(self, data=None):
        b = _board
        if data is None:
            return bytes(b.rtc_memory)
        data = _bytes(data)
        if len(data) > simboard.RTC_MEMORY_BYTES:
            raise ValueError("buffer too long")
        b.rtc_memory = data


# ---- WDT -------------------------------------------------------------------------------------
class WDT:
    def __init__(self, *, id=0, timeout=5000):
        if id != 0:
            raise ValueError("WDT(%s) doesn't exist" % (id,))
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _board.wdt_timeout_ms = timeout
        _board.wdt_fed_us = _board.clock.now_us

    def feed(self):
        _board.wdt_fed_us = _board.clock.now_us


# ---- PWM -------------------------------------------------------------------------------------
class PWM:
    # The settings live on the pin (board.pins[pid]["pwm"]) for chips to read.
    def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, invert=None):
        self._id = _pin_id(dest)
        self.init(freq=freq, duty_u16=duty_u16, duty_ns=duty_ns, invert=invert)

    def _state(self):
        p = _board.pin(self._id)
        st = p.get("pwm")
        if st is None:
            st = {"freq": 5000, "duty_u16": 32768, "invert": False}  # port defaults: 5 kHz, 50%
            p["pwm"] = st
        return st

    def init(self, *, freq=None, duty_u16=None, duty_ns=None, invert=None):
        st = self._state()
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        if duty_ns is not None:
            self.duty_ns(duty_ns)
        if invert is not None:
            st["invert"] = bool(invert)

    def deinit(self):
        _board.pin(self._id)["pwm"] = None

    def freq(self, value=None):
        st = self._state()
        if value is None:
            return st["freq"]
        if value < 1 or value > 40000000:
            raise ValueError("frequency must be from 1Hz to 40MHz")
        st["freq"] = int(value)

    def duty_u16(self, value=None):
        st = self._state()
        if value is None:
            return st["duty_u16"]
        if value < 0 or value > 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        st["duty_u16"] = int(value)

    def duty_ns(self, value=None):
        st = self._state()
        period_ns = 1000000000 // st["freq"]
        if value is None:
            return st["duty_u16"] * period_ns // 65535
        d = value * 65535 // period_ns if period_ns else 0
        st["duty_u16"] = 65535 if d > 65535 else (0 if d < 0 else d)

    def duty(self, *args, **kwargs):
        # Legacy 10-bit duty (0-1023).
        st = self._state()
        if not args:
            return (st["duty_u16"] * 1023 + 32767) // 65535
        d = args[0]
        d = 1023 if d > 1023 else (0 if d < 0 else d)
        st["duty_u16"] = (d * 65535 + 511) // 1023


# ---- Counter, Encoder (the PCNT) -------------------------------------------------------------
# ports/esp32/modules/machine.py (v1.26+) builds machine.Counter and machine.Encoder in Python
# over esp32.PCNT: one PCNT unit per id (0-7 on the ESP32), a singleton per unit shared by the
# two classes ("PCNT in use" when the other class has the unit), the 16-bit hardware count
# extended in software (so value() is an unbounded int: the fake has no overflow to model).
# Counter: channel 0 counts `edge` (RISING=1, FALLING=2, or both) in `direction` (UP=1 adds,
# DOWN=2 subtracts); on the ESP32 the direction is one of these constants, not a pin.
# Encoder: channel 0 counts phase_a (falling +1, rising -1) while phase_b is high, and while
# phase_b is low holds (phases=1) or counts reversed (phases 2 and 4); phases=4 adds channel 1
# on phase_b (rising +1, falling -1, reversed while phase_a is low). Passing arguments
# reconfigures the unit and zeroes it; Counter(id) alone returns the unit as it is; value(v)
# returns the count and sets it to v; deinit() stops it (value() then raises RuntimeError).
# How the fake sees the hardware:
# - An edge is a change of the level the node reads on the pin, which Board.pin_update reports
#   through the pin's "watch" (the unit chains itself after a watcher already there). A level
#   a chip supplies as a function (board.pin_inputs) makes no edge the unit can see.
# - Glitch filter: filter_ns becomes min(filter_ns * 80 // 1000, 1023) APB cycles of 12.5 ns
#   (the port's conversion; the ESP32 filter threshold is 10 bits), so at most 12.79 us; a
#   level that lasts less than that is ignored (ESP-IDF glitch filter `max_glitch_ns`). It is a
#   filter against glitches, not against contact bounce (bounces last tens to hundreds of us).
#   The control (mode) inputs are read unfiltered at the edge.
# - Clock gating: the PCNT is a digital peripheral clocked from APB_CLK. "In light sleep mode,
#   digital peripherals, most of the RAM, and CPUs are clock-gated ... Upon exit from light
#   sleep, peripherals and CPUs resume operation, their internal state is preserved"; in deep
#   sleep they are powered off (ESP-IDF "Sleep Modes", ESP32, v4.4). So the unit counts no edge
#   that comes while the board spends light sleep, deep sleep or off, keeps its count across a
#   light sleep, and ends at any reset. Assumption (no source): a level that changed during the
#   sleep makes no edge when the clock resumes. Board.advance() does not publish the state of
#   the span it spends, so the first unit wraps the board's advance() to remember it.
_PCNT_UNITS = 8  # ESP32: PCNT units 0-7 (ESP32 TRM, Pulse Count Controller)


def _pcnt_track(b):
    # Remember the power state of the span board.advance() is spending (for clock gating).
    if b.extra.get("pcnt_wrapped"):
        return
    b.extra["pcnt_wrapped"] = True
    b.extra["pcnt_span"] = None
    inner = b.advance

    def advance(us, state=None):
        ex = b.extra
        prev = ex["pcnt_span"]
        ex["pcnt_span"] = state if state is not None else b.state
        try:
            inner(us, state)
        finally:
            ex["pcnt_span"] = prev

    b.advance = advance


def _pcnt_clock_on(b):
    st = b.extra.get("pcnt_span")
    if st is None:
        st = b.state
    return st != simboard.LIGHT_SLEEP and st != simboard.DEEP_SLEEP and st != simboard.OFF


def _pcnt_listen(b, pid, unit):
    # One watcher per pin, installed once, hands each level change to the live units on it.
    pins = b.extra.get("pcnt_pins")
    if pins is None:
        pins = {}
        b.extra["pcnt_pins"] = pins
    units = pins.get(pid)
    if units is None:
        units = []
        pins[pid] = units
        p = b.pin(pid)
        prev = p["watch"]

        def watch(board, q, level):
            if prev is not None:
                prev(board, q, level)
            for u in list(units):
                u._edge(q, level)

        p["watch"] = watch
    i = 0
    while i < len(units):  # forget units of earlier boots or reconfigurations
        if units[i] is unit or not units[i]._live():
            units.pop(i)
        else:
            i += 1
    units.append(unit)


def _pcnt_unit(id, kind):
    if not isinstance(id, int) or id < 0 or id >= _PCNT_UNITS:
        raise ValueError("invalid unit")
    r = _ram()
    units = r.get("pcnt")
    if units is None:
        units = {}
        r["pcnt"] = units
    u = units.get(id)
    if u is None:
        u = _PcntUnit(kind)
        units[id] = u
    elif u._kind != kind:
        raise ValueError("PCNT in use")
    return u


class _PcntUnit:
    def __init__(self, kind):
        self._kind = kind
        self._boot = _board.boots
        self._on = False
        self._count = 0
        self._filt_ns = 0
        self._phases = 1
        self._chans = ()  # (signal pid, control pid or None, rising, falling, low, high) actions
        self._sig = {}  # signal pid -> [pid, filtered level, pending level or None, at us,
        #                                 clock on at the edge, control levels at the edge]

    def _live(self):
        return self._on and self._boot == _board.boots

    def _setup(self, chans, filter_ns, phases=1):
        b = _board
        cycles = filter_ns * 80 // 1000
        cycles = 0 if cycles < 0 else (1023 if cycles > 1023 else cycles)
        self._filt_ns = cycles * 25 // 2
        self._chans = chans
        self._phases = phases
        self._count = 0
        self._on = True
        self._sig = {}
        _pcnt_track(b)
        for ch in chans:
            s = ch[0]
            if s not in self._sig:
                self._sig[s] = [s, b.pin_level(s), None, 0, False, None]
                _pcnt_listen(b, s, self)

    def _edge(self, pid, level):
        st = self._sig.get(pid)
        if st is None or not self._live():
            return
        b = _board
        now = b.clock.now_us
        self._settle(st, now)
        st[2] = None  # a pending level still there lasted less than the filter: a glitch
        if level != st[1]:
            st[2] = level
            st[3] = now
            st[4] = _pcnt_clock_on(b)
            st[5] = [b.pin_level(ch[1]) if ch[1] is not None else 1 for ch in self._chans]
            if self._filt_ns == 0:
                self._settle(st, now)

    def _settle(self, st, now):
        if st[2] is None or (now - st[3]) * 1000 < self._filt_ns:
            return
        st[1] = st[2]
        st[2] = None
        if not st[4]:
            return  # the clock was gated: the edge went unseen
        level = st[1]
        ctrl = st[5]
        for i in range(len(self._chans)):
            ch = self._chans[i]
            if ch[0] != st[0]:
                continue
            act = ch[2] if level else ch[3]  # 0 hold, 1 increment, 2 decrement
            if act == 0:
                continue
            d = 1 if act == 1 else -1
            if ch[1] is not None:
                mode = ch[5] if ctrl[i] else ch[4]  # 0 keep, 1 reverse, 2 hold
                if mode == 2:
                    continue
                if mode == 1:
                    d = -d
            self._count += d

    def _value(self, value):
        if not self._live():
            raise RuntimeError("not initialised")
        now = _board.clock.now_us
        for pid in self._sig:
            self._settle(self._sig[pid], now)
        v = self._count
        if value is not None:
            self._count = value
        return v


class Counter:
    RISING = 1
    FALLING = 2
    UP = 1
    DOWN = 2

    def __init__(self, id, src=None, *, edge=None, direction=None, filter_ns=None):
        # Defaults: edge=RISING, direction=UP, filter_ns=0 (no filter).
        self._id = id
        u = _pcnt_unit(id, "Counter")
        if src is None:
            if edge is not None or direction is not None or filter_ns is not None or not u._live():
                raise TypeError("src required")
            return
        self.init(src, edge=edge, direction=direction, filter_ns=filter_ns)

    def init(self, src, *, edge=None, direction=None, filter_ns=None):
        edge = 1 if edge is None else edge
        direction = 1 if direction is None else direction
        if direction != 1 and direction != 2:
            raise ValueError("direction")
        rising = direction if edge & 1 else 0
        falling = direction if edge & 2 else 0
        _pcnt_unit(self._id, "Counter")._setup(((_pin_id(src), None, rising, falling, 0, 0),),
                                               filter_ns or 0)

    def value(self, value=None):
        return _pcnt_unit(self._id, "Counter")._value(value)

    def deinit(self):
        _pcnt_unit(self._id, "Counter")._on = False


class Encoder:
    def __init__(self, id, phase_a=None, phase_b=None, *, filter_ns=None, phases=None):
        # Defaults: filter_ns=0, phases=1.
        self._id = id
        u = _pcnt_unit(id, "Encoder")
        if phase_a is None:
            if phase_b is not None or filter_ns is not None or phases is not None or not u._live():
                raise TypeError("phase_a, phase_b required")
            return
        self.init(phase_a, phase_b, filter_ns=filter_ns, phases=phases)

    def init(self, phase_a, phase_b, *, filter_ns=None, phases=None):
        phases = 1 if phases is None else phases
        if phases not in (1, 2, 4):
            raise ValueError("phases")
        a = _pin_id(phase_a)
        b = _pin_id(phase_b)
        # channel 0: a rising -> decrement (2), falling -> increment (1); b low -> hold (2) or
        # reverse (1), b high -> keep (0). channel 1 (phases=4): b rising +, falling -, a low reverses.
        chans = [(a, b, 2, 1, 2 if phases == 1 else 1, 0)]
        if phases == 4:
            chans.append((b, a, 1, 2, 1, 0))
        _pcnt_unit(self._id, "Encoder")._setup(tuple(chans), filter_ns or 0, phases)

    def value(self, value=None):
        return _pcnt_unit(self._id, "Encoder")._value(value)

    def deinit(self):
        _pcnt_unit(self._id, "Encoder")._on = False

    def phases(self):
        return _pcnt_unit(self._id, "Encoder")._phases


# ---- functions -------------------------------------------------------------------------------
def reset():
    raise simboard.HardReset()


def soft_reset():
    raise simboard.SoftReset()


def reset_cause():
    c = _board.reset_cause
    # machine.reset() is esp_restart(), ESP_RST_SW, which the port reports as SOFT_RESET; it
    # never reports HARD_RESET on the ESP32 (ESP_RST_EXT is not returned by this chip).
    if c == simboard.HARD_RESET:
        return simboard.SOFT_RESET
    return c


def wake_reason():
    return _board.wake_reason


def unique_id():
    return bytes(_board.uid)


def freq(hz=None):
    r = _ram()
    if hz is None:
        return r["cpu_hz"]
    mhz = hz // 1000000
    if mhz not in (20, 40, 80, 160, 240):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    r["cpu_hz"] = mhz * 1000000


def idle():
    _step(_board.clock.now_us + _IDLE_MAX_US)


def disable_irq():
    b = _board
    off = getattr(b, "irq_off", None)
    prev = 1 if (off is not None and off[0] == b.boots and off[1]) else 0
    b.irq_off = (b.boots, 1)
    return prev


def enable_irq(state):
    b = _board
    b.irq_off = (b.boots, 1 if state else 0)
    if not state:
        b.run_irqs()


def deepsleep(time_ms=0):
    # time_ms 0: no timer wake-up. The boot loop spends the sleep and boots the board again.
    raise simboard.DeepSleep(time_ms)


def _wake_source(kind):
    # The EXT0/EXT1 wake reason if a configured wake pin is at its level now, else 0.
    b = _board
    for pid in b.pins:
        p = b.pins[pid]
        w = p.get("wake")
        if w and (w & kind) and p.get("wake_boot") == b.boots:
            if b.pin_level(pid) == p.get("wake_level"):
                return simboard.EXT0_WAKE
    ext0 = b.extra.get("wake_ext0")  # esp32.wake_on_ext0(pin, level)
    if ext0 and ext0[0] is not None:
        if b.pin_level(_pin_id(ext0[0])) == (1 if ext0[1] else 0):
            return simboard.EXT0_WAKE
    ext1 = b.extra.get("wake_ext1")  # esp32.wake_on_ext1(pins, level)
    if ext1 and ext1[0]:
        levels = [b.pin_level(_pin_id(x)) for x in ext1[0]]
        if ext1[1]:  # WAKEUP_ANY_HIGH
            if 1 in levels:
                return simboard.EXT1_WAKE
        elif 1 not in levels:  # WAKEUP_ALL_LOW
            return simboard.EXT1_WAKE
    return 0


def lightsleep(time_ms=0):
    # Sleeps in LIGHT_SLEEP until time_ms passes (0: no timer) or a configured wake pin
    # (Pin.irq(wake=SLEEP), esp32.wake_on_ext0/ext1) reaches its level. Plain edge IRQs do not
    # wake the ESP32 from light sleep; their handlers run as soon as time passes.
    b = _board
    end = b.clock.now_us + time_ms * 1000 if time_ms and time_ms > 0 else None
    while True:
        reason = _wake_source(SLEEP)
        if reason:
            b.wake_reason = reason
            return
        now = b.clock.now_us
        if end is not None and now >= end:
            b.wake_reason = simboard.TIMER_WAKE
            return
        _step(end if end is not None else now + _WAKE_POLL_US, simboard.LIGHT_SLEEP)


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    # extmod/machine_pulse.c: -2 if the pin never reaches pulse_level within timeout_us, -1 if
    # it stays there longer than timeout_us, else the pulse width in us.
    b = _board
    pid = _pin_id(pin)
    level = 1 if pulse_level else 0
    src = b.pulse_sources.get(pid)
    if src is not None:
        result, elapsed = src(b, level, timeout_us)
        b.advance(elapsed)
        return result
    start = b.clock.now_us
    while b.pin_level(pid) != level:
        if b.clock.now_us - start >= timeout_us:
            return -2
        _step(start + timeout_us)
    start = b.clock.now_us
    while b.pin_level(pid) == level:
        if b.clock.now_us - start >= timeout_us:
            return -1
        _step(start + timeout_us)
    return b.clock.now_us - start
