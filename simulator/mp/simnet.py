# The network as the nodes see it: access points, the uplink to the broker and NTP, and the
# faults that take them away. One per scenario (shared by its nodes under CPython; one per
# VM under MicroPython). MicroPython dialect.


class AccessPoint:
    def __init__(self, ssid, key, bssid, channel, rssi):
        self.ssid = ssid
        self.key = key
        self.bssid = bssid
        self.channel = channel
        self.rssi = rssi


class NetworkWorld:
    """Outages are intervals of sim time, [start_us, end_us), so every node sees one at its
    own clock's time, however far the scheduler let it run ahead of the others."""

    def __init__(self, aps=None, outages=None):
        self.aps = aps if aps is not None else [
            AccessPoint("townsense", "townsense-demo", b"\x02\x54\x53\x00\x00\x01", 6, -67)
        ]
        self.outages = outages if outages is not None else {}  # "wifi"/"ntp" -> [(start, end)]

    def _up(self, what, board):
        t = board.clock.now_us
        for start, end in self.outages.get(what, ()):
            if start <= t < end:
                return False
        return True

    def wifi_ok(self, board):
        return self._up("wifi", board)

    def find_ap(self, board, ssid, bssid=None):
        if not self.wifi_ok(board):
            return None
        for ap in self.aps:
            if ap.ssid == ssid and (bssid is None or ap.bssid == bssid):
                return ap
        return None

    def rssi_for(self, board, ap):
        # A node's signal: the AP's figure shifted by the node's distance (seeded per node).
        return ap.rssi - (sum(board.uid) % 15)

    def sta_connected(self, board):
        return self.wifi_ok(board) and board.sta_ip is not None

    def ntp_reachable(self, board):
        return self._up("ntp", board)
