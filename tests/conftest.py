# Shared fixtures: `mosquitto` (a broker of the test's own on a free loopback port).
from tests.brokers import mosquitto  # noqa: F401
