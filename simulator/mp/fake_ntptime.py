# Fake of the `ntptime` module frozen into the ESP32 firmware (micropython-lib ntptime):
# asks the simulated network for the true time and sets the RTC. It needs a connected
# station interface; otherwise it fails the way the real one does (a socket error).
import errno
import simboard

_board = None
host = "pool.ntp.org"
timeout = 1
# One NTP exchange: a UDP round trip on the local network, plus radio time.
_RTT_US = 40000


def _attach(board):
    global _board
    _board = board


def _exchange():
    net = _board.network
    if net is None or not net.sta_connected(_board):
        _board.advance(timeout * 1000000)
        raise OSError(errno.ETIMEDOUT)
    if not net.ntp_reachable(_board):
        _board.advance(timeout * 1000000, simboard.WIFI_RX)
        raise OSError(errno.ETIMEDOUT)
    _board.advance(_RTT_US, simboard.WIFI_RX)
    return _board.true_epoch2000_us()


def time():
    """Seconds since the port's epoch (2000) by the NTP server."""
    return _exchange() // 1000000


def settime():
    us = _exchange()
    _board.set_rtc_seconds(us // 1000000, us % 1000000)
