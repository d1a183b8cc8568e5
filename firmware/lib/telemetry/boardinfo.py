# The board profile (boards/<name>.json in the repository), copied to the flash as board.json
# by provisioning: pins per node type, battery divider, power figures. The firmware never
# guesses hardware facts.
from telemetry import atomic

PATH = "board.json"


def load():
    try:
        prof = atomic.read_json(PATH)
    except ValueError:
        prof = None
    if not isinstance(prof, dict):
        # Without a profile the node still runs: no pins, mains-powered, no battery figure.
        return {"name": "unknown", "power_supply": "mains", "battery": None, "pins": {}}
    return prof


def pins(prof, node_type):
    return prof.get("pins", {}).get(node_type, {})
