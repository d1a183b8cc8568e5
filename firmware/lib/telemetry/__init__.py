# TownSense telemetry core: the part every node type shares.
VERSION = "0.2.0"
