# Fake of MicroPython's `os` module and of the builtin `open`, over one node's flash: a host
# directory. Paths are the board's ('/config.json' or 'config.json' from cwd '/').
#
# The model of the flash: a LittleFS volume of `board.flash_budget` bytes (block size 4096);
# a write that does not fit raises OSError(ENOSPC), and `board.flash_write_hook` may cut the
# power in the middle of a write, leaving the bytes written so far (a torn write).
import errno
import _hostos

_board = None
_cwd = "/"
_BLOCK = 4096
_DEFAULT_FS_BYTES = 2 * 1024 * 1024  # the ESP32 port's default vfs partition on 4 MB flash


def _attach(board):
    global _board
    _board = board
    if not board.flash_budget:
        board.flash_budget = _DEFAULT_FS_BYTES
    board.flash_used = _du(board.flash_root)


def _blocks(size):
    return (size + _BLOCK - 1) // _BLOCK if size > 0 else 0


def _du(host):
    total = 0
    for name in _hostos.listdir(host):
        p = host + "/" + name
        st = _hostos.stat(p)
        if st[0] & 0x4000:
            total += _BLOCK + _du(p)
        else:
            total += _blocks(st[6]) * _BLOCK
    return total


def _abs(path):
    if _cwd == "/" and "/" not in path and path != "." and path != "..":
        return "/" + path  # the common case: a file in the root directory
    if not path.startswith("/"):
        path = (_cwd.rstrip("/") + "/" + path) if _cwd != "/" else "/" + path
    parts = []
    for p in path.split("/"):
        if p == "" or p == ".":
            continue
        if p == "..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return "/" + "/".join(parts)


def _host(path):
    a = _abs(path)
    return _board.flash_root + (a if a != "/" else "")


def _touch_code(path):
    # The node's code changed (an update, a provisioning tool): module caches must reload.
    if path.endswith(".py") or path.endswith(".mpy"):
        _board.code_gen += 1


def _size(host):
    try:
        return _hostos.stat(host)[6]
    except OSError:
        return -1


def _charge(old_size, new_size):
    """Account a file growing from old_size to new_size bytes; ENOSPC if it does not fit."""
    delta = (_blocks(new_size) - _blocks(max(old_size, 0))) * _BLOCK
    if delta > 0 and _board.flash_used + delta > _board.flash_budget:
        raise OSError(errno.ENOSPC)
    _board.flash_used += delta


class _File:
    def __init__(self, host, mode, f):
        self._host = host
        self._f = f
        self._mode = mode
        self._size = _size(host) if ("a" in mode or "+" in mode) else 0
        if self._size < 0:
            self._size = 0

    def write(self, data):
        n = len(data)
        _charge(self._size, self._size + n)
        hook = _board.flash_write_hook
        if hook is not None:
            cut = hook(_board, self._host, n)
            if cut is not None:
                # Power fails part-way: what reached the flash stays, the rest is lost.
                self._f.write(data[:cut])
                self._f.close()
                _board.power_cut()
        self._f.write(data)
        self._size += n
        return n

    def read(self, n=-1):
        return self._f.read(n)

    def readinto(self, buf, n=-1):
        return self._f.readinto(buf) if n < 0 else self._f.readinto(memoryview(buf)[:n])

    def readline(self, n=-1):
        return self._f.readline(n)

    def readlines(self):
        return self._f.readlines()

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


def _open(path, mode="r", buffering=-1, encoding=None):
    host = _host(path)
    if "r" not in mode or "+" in mode:
        _touch_code(host)
    if "w" in mode:
        old = _size(host)
        if old > 0:
            _charge(old, 0)
    try:
        f = _hostos.open(host, mode)
    except OSError as e:
        raise OSError(errno.ENOENT) if "r" in mode and "+" not in mode else e
    if "r" in mode and "+" not in mode:
        return f
    return _File(host, mode, f)


def listdir(dir=None):
    return sorted(_hostos.listdir(_host(dir or _cwd)))


def ilistdir(dir=None):
    base = _host(dir or _cwd)
    for name in sorted(_hostos.listdir(base)):
        st = _hostos.stat(base + "/" + name)
        yield (name, 0x4000 if st[0] & 0x4000 else 0x8000, 0, st[6])


def stat(path):
    try:
        st = _hostos.stat(_host(path))
    except OSError:
        raise OSError(errno.ENOENT)
    kind = 0x4000 if st[0] & 0x4000 else 0x8000
    return (kind, 0, 0, 0, 0, 0, st[6], int(st[7]), int(st[8]), int(st[9]))


def statvfs(path):
    total = _board.flash_budget // _BLOCK
    free = (_board.flash_budget - _board.flash_used) // _BLOCK
    return (_BLOCK, _BLOCK, total, free, free, 0, 0, 0, 0, 255)


def remove(path):
    host = _host(path)
    old = _size(host)
    try:
        _hostos.remove(host)
    except OSError:
        raise OSError(errno.ENOENT)
    _touch_code(host)
    _board.flash_used -= _blocks(old) * _BLOCK


def rename(old_path, new_path):
    src = _host(old_path)
    dst = _host(new_path)
    if _size(src) < 0:
        raise OSError(errno.ENOENT)
    replaced = _size(dst)
    _hostos.rename(src, dst)
    _touch_code(src)
    _touch_code(dst)
    if replaced > 0:
        _board.flash_used -= _blocks(replaced) * _BLOCK


def mkdir(path):
    try:
        _hostos.mkdir(_host(path))
    except OSError:
        raise OSError(errno.EEXIST)
    _board.flash_used += _BLOCK


def rmdir(path):
    _hostos.rmdir(_host(path))
    _board.flash_used -= _BLOCK


def chdir(path):
    global _cwd
    a = _abs(path)
    if stat(a)[0] != 0x4000:
        raise OSError(errno.ENOTDIR)
    _cwd = a


def getcwd():
    return _cwd


def sync():
    pass


class _Uname:
    # os.uname() on the port: a tuple with named fields
    sysname = "esp32"
    nodename = "esp32"
    release = "1.29.0"
    version = "v1.29.0 on 2026-01-01"
    machine = "Generic ESP32 module with ESP32"

    def __getitem__(self, i):
        return (self.sysname, self.nodename, self.release, self.version, self.machine)[i]

    def __len__(self):
        return 5


def uname():
    return _Uname()


def urandom(n):
    import random
    return bytes([random.getrandbits(8) for _ in range(n)])
