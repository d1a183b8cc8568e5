# Files that must survive a power cut at any byte: write a temporary file, then rename it over
# the old one (a rename is atomic on LittleFS and FAT alike for our purposes).
import json
import os


def write_bytes(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def write_json(path, obj):
    write_bytes(path, json.dumps(obj).encode())


def read_json(path):
    """The parsed file, or None when it does not exist. Garbage raises ValueError."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return json.loads(text)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
