"""The collector's broker URL: `mqtt://host[:port]` (plain, port 1883) or `mqtts://host[:port]`
(TLS, port 8883).

    parse("mqtts://broker.example.org")  ->  BrokerURL(host="broker.example.org", port=8883, tls=True)

Both go through simulator.broker.parse_url, the one the simulator uses, with the two schemes
and their default ports. Every refusal is a ValueError that names the URL.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from simulator.broker import DEFAULT_PORT as MQTT_PORT
from simulator.broker import parse_url

__all__ = ["MQTT_PORT", "MQTTS_PORT", "BrokerURL", "parse"]

MQTTS_PORT = 8883
# a DNS name as getaddrinfo and a certificate's name check take it (IDNA-encoded first)
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d" % ("mqtts" if self.tls else "mqtt", host, self.port)


def parse(url: str) -> BrokerURL:
    """BrokerURL of "mqtt://host[:port]" or "mqtts://host[:port]"; ValueError naming the URL for
    anything else (another scheme, no host, a bad port, credentials, a path, a host name that
    is no name)."""
    if not isinstance(url, str):
        raise ValueError("broker URL must be a string like mqtts://host:8883, not %r" % (url,))
    try:
        scheme = urlsplit(url).scheme
    except ValueError as e:  # unbalanced brackets, characters that NFKC turns into separators
        raise ValueError("broker URL %r: %s" % (url, e)) from None
    try:
        host, port = parse_url(url, {"mqtt": MQTT_PORT, "mqtts": MQTTS_PORT})
    except ValueError as e:
        raise ValueError(str(e) if repr(url) in str(e) else "broker URL %r: %s" % (url, e)) from None
    _check_host(url, host)
    return BrokerURL(host, port, scheme == "mqtts")


def _check_host(url: str, host: str) -> None:
    """An IP address or a DNS name: a host with spaces or odd characters would only fail later,
    at every reconnect, without saying why."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = None
    labels = ascii_host.lower().split(".") if ascii_host else []
    if labels and labels[-1] == "":
        labels.pop()  # a fully qualified name's final dot
    if not labels or not all(_LABEL.match(label) for label in labels):
        raise ValueError("broker URL %r: %r is neither a host name nor an IP address" % (url, host))
