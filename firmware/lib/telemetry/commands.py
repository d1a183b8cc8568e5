# Commands from <prefix>/<node>/cmd: {"id": ..., "cmd": ..., "args": {...}}. Every command
# gets an ack on <prefix>/<node>/ack; an unknown or malformed one gets an error ack and changes
# nothing. A config change is a JSON merge patch (RFC 7396), validated, written atomically and
# applied by a restart; the previous config is kept in config.bak until the node has reached
# the broker with the new one (see trial_failed()).
import json
import os

from telemetry import atomic, config

BAK = "config.bak"
TRIAL = "config.trial"
TRIAL_ATTEMPTS = 3  # reports that may fail to reach the broker before the old config returns
_FIXED = ("node_id", "type")  # identity is set by provisioning, not by a command


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k in patch:
        v = patch[k]
        if v is None:
            if k in out:
                del out[k]
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def parse(payload):
    """(id, cmd, args) or raises ValueError with what is wrong."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        raise ValueError("malformed command: not JSON")
    if not isinstance(msg, dict):
        raise ValueError("malformed command: not an object")
    cid = msg.get("id")
    cmd = msg.get("cmd")
    args = msg.get("args", {})
    if not isinstance(cid, str) or not 1 <= len(cid) <= 40:
        raise ValueError("malformed command: 'id' must be a string of 1-40 characters")
    if not isinstance(cmd, str):
        raise ValueError("malformed command: 'cmd' must be a string")
    if not isinstance(args, dict):
        raise ValueError("malformed command: 'args' must be an object")
    return cid, cmd, args


def apply_config_patch(patch):
    """Validate and write the patched config; returns None or the error text."""
    for k in _FIXED:
        if k in patch:
            return "'%s' cannot be changed by a command (provision the node again)" % k
    try:
        raw = atomic.read_json(config.PATH)
    except ValueError:
        raw = None
    new = merge_patch(raw, patch)
    try:
        config.validate(new)
    except config.ConfigError as e:
        return "config rejected: %s" % e
    if not atomic.exists(TRIAL):
        # the running config is known good: keep it for a rollback
        atomic.write_json(BAK, raw)
    atomic.write_json(config.PATH, new)
    atomic.write_json(TRIAL, {"n": 0})
    return None


def trial_passed():
    """The node reached the broker with its new config: it is the good one now."""
    if atomic.exists(TRIAL):
        os.remove(TRIAL)


def trial_failed():
    """A report with a config on trial did not reach the broker. After TRIAL_ATTEMPTS the old
    config comes back; returns True when it did (the caller restarts)."""
    if not atomic.exists(TRIAL):
        return False
    try:
        st = atomic.read_json(TRIAL) or {}
    except ValueError:
        st = {}
    n = st.get("n", 0) + 1
    if n < TRIAL_ATTEMPTS:
        atomic.write_json(TRIAL, {"n": n})
        return False
    try:
        old = atomic.read_json(BAK)
    except ValueError:
        old = None
    if old is not None:
        atomic.write_json(config.PATH, old)
    os.remove(TRIAL)
    print("config: the new config never reached the broker; the previous one is back")
    return True
