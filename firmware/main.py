# TownSense node: everything lives in lib/ (sys.path has /lib on the ESP32 port).
from telemetry import lifecycle

lifecycle.main()
