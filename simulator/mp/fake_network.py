# Fake of MicroPython's `network` module (ESP32 port), station interface only.
# Connecting takes the board profile's measured time (DHCP, static IP, or with a cached BSSID
# and channel), booked to the wifi_connect power state; a connected radio idles in wifi_idle.
import simboard

_board = None

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_BEACON_TIMEOUT = 200
AUTH_OPEN = 0
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
# How long the port keeps trying before it reports failure (esp_wifi scan + auth timeouts).
_FAIL_AFTER_MS = 3000


class _State:
    """The station interface: one per node (every WLAN(STA_IF) is the same interface on the
    port), reset when the chip resets."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.active = False
        self.status = STAT_IDLE
        self.ap = None
        self.pending = None
        self.static = None
        self.pm = 1
        self.reconnects = -1


_st = _State()


def _attach(board):
    global _board
    _board = board
    board.sta_ip = None
    board.boot_hooks.append(_on_boot)


def _on_boot(board):
    board.sta_ip = None
    _st.reset()


def _finish(ap, status):
    _st.pending = None
    if ap is not None and not _board.network.wifi_ok(_board):
        ap, status = None, STAT_NO_AP_FOUND
    _st.status = status
    _st.ap = ap
    if ap is not None:
        _board.sta_ip = _st.static[0] if _st.static else "10.0.%d.%d" % (_board.uid[4], _board.uid[5] or 1)
        _board.state = simboard.WIFI_IDLE
    else:
        _board.sta_ip = None
        _board.state = simboard.ACTIVE


def _check_link():
    # The AP went away (a Wi-Fi outage): the port reports a beacon timeout.
    if _st.ap is not None and not _board.network.wifi_ok(_board):
        _st.ap = None
        _board.sta_ip = None
        _st.status = STAT_BEACON_TIMEOUT
        _board.state = simboard.ACTIVE


def hostname(name=None):
    if name is None:
        return "esp32-" + _board.node_id
    return None


class WLAN:
    IF_STA = 0
    IF_AP = 1
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=0):
        if interface_id != STA_IF:
            raise ValueError("only the station interface is simulated")

    def active(self, is_active=None):
        if is_active is None:
            return _st.active
        if is_active and not _st.active:
            _st.active = True
            _board.advance(50000, simboard.ACTIVE)  # radio calibration and start
        elif not is_active and _st.active:
            self.disconnect()
            _st.active = False
            _board.state = simboard.ACTIVE
        return None

    def connect(self, ssid=None, password=None, *, bssid=None):
        if not _st.active:
            raise OSError("Wifi Not Started")
        self.disconnect()
        net = _board.network
        ap = net.find_ap(_board, ssid, bssid) if net is not None else None
        prof = _board.profile.get("wifi", {})
        _st.status = STAT_CONNECTING
        _board.state = simboard.WIFI_CONNECT
        now = _board.now_us()
        if ap is None or (ap.key and ap.key != password):
            fail = STAT_NO_AP_FOUND if ap is None else STAT_WRONG_PASSWORD
            _st.pending = _board.call_at(now + _FAIL_AFTER_MS * 1000, lambda b: _finish(None, fail))
            return None
        if bssid is not None:
            ms = prof.get("connect_fast_ms", 300)
        elif _st.static is not None:
            ms = prof.get("connect_static_ms", 734)
        else:
            ms = prof.get("connect_dhcp_ms", 1626)
        _st.pending = _board.call_at(now + int(ms) * 1000, lambda b: _finish(ap, STAT_GOT_IP))
        return None

    def disconnect(self):
        if _st.pending is not None:
            _board.cancel(_st.pending)
            _st.pending = None
        _st.ap = None
        _board.sta_ip = None
        _st.status = STAT_IDLE
        if _st.active:
            _board.state = simboard.ACTIVE

    def isconnected(self):
        _check_link()
        return _st.status == STAT_GOT_IP

    def status(self, param=None):
        _check_link()
        if param is None:
            return _st.status
        if param == "rssi":
            if _st.ap is None:
                raise OSError("not connected")
            return _board.network.rssi_for(_board, _st.ap)
        raise ValueError("unknown status param")

    def scan(self):
        if not _st.active:
            raise OSError("Wifi Not Started")
        _board.advance(2000000, simboard.WIFI_RX)  # an active scan of all channels
        out = []
        net = _board.network
        if net is not None and net.wifi_ok(_board):
            for ap in net.aps:
                out.append((ap.ssid.encode(), ap.bssid, ap.channel, net.rssi_for(_board, ap), 3, False))
        return out

    def config(self, param):
        # The getter form only (the keyword setter form is not simulated).
        ap = _st.ap
        if param == "mac":
            return _board.uid
        if param == "ssid":
            return ap.ssid if ap else ""
        if param == "channel":
            return ap.channel if ap else 1
        if param == "hostname":
            return hostname()
        if param == "pm":
            return _st.pm
        if param == "reconnects":
            return _st.reconnects
        if param == "txpower":
            return 20
        raise ValueError("unknown config param")

    def ifconfig(self, ip_mask_gateway_dns=None):
        if ip_mask_gateway_dns is None:
            ip = _board.sta_ip or "0.0.0.0"
            return (ip, "255.255.255.0", "10.0.0.1", "10.0.0.1")
        _st.static = tuple(ip_mask_gateway_dns)
        return None
