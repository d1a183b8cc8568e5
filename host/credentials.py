"""Per-device MQTT credentials and the broker's ACL: mosquitto's `password_file` and
`acl_file`, written and merged by the host tools.

    from host import credentials
    pw = credentials.new_password()
    h = credentials.hash_password(pw)              # "$7$101$<salt>$<hash>"
    credentials.verify_password(pw, h)             # True
    creds = credentials.BrokerFiles("/etc/mosquitto/townsense")
    creds.add_node("bin-017", h, prefix="townsense")   # passwd + acl entries, merged
    creds.service_users("townsense")               # {"collector": (user, pw), "operator": ...}

Password hashes are mosquitto 2.x's PBKDF2-SHA512 format, as `mosquitto_passwd` writes it
(mosquitto src apps/mosquitto_passwd/mosquitto_passwd.c, output_new_password(); and
common/password_mosq.h): `user:$7$<iterations>$<base64 salt>$<base64 hash>`, salt 12 random
bytes, hash the 64-byte PBKDF2-HMAC-SHA512 of the password, standard base64 with padding.
The broker reads the iteration count from each line.

ACL: one `user` block per MQTT user (mosquitto.conf(5), "acl_file"). A node may write only
its own outgoing topics and read only its own commands; the collector reads everything under
a prefix; the operator writes commands and reads what nodes answer. Blocks of other users,
comments and `pattern` lines already in the files are kept as they are.

Node passwords are never stored on the host: the node has it (config.json on its flash), the
registry and the password file have the hash. The service users' passwords are kept in
`service-users.json` (mode 0600) next to the broker files: the collector and the operator's
tools must present them.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path

# mosquitto_passwd 2.0's default (PW_DEFAULT_ITERATIONS): each CONNECT costs the broker one
# derivation. The passwords are 24 random bytes, so the count is not what protects them.
ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 24  # 192 bits, 32 URL-safe characters (config.json allows up to 128)

PASSWD = "passwd"
ACL = "acl"
SERVICE_USERS = "service-users.json"
# Service user names cannot be node ids: ids start with a lower-case letter or a digit.
COLLECTOR = "_collector"
OPERATOR = "_operator"
NODE_WRITES = ("telemetry", "event", "health", "status", "ack")  # docs/protocol.md, node → host


class CredentialsError(Exception):
    pass


# ---- passwords -----------------------------------------------------------------------------

def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The password's mosquitto PBKDF2-SHA512 hash (the part after "user:")."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password: str, hashed: str) -> bool:
    """True when `hashed` (a `$7$` line's hash part) is the hash of `password`."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        raise CredentialsError("not a mosquitto PBKDF2-SHA512 hash ($7$...): %r" % hashed[:20])
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        want = base64.b64decode(parts[4], validate=True)
    except ValueError as e:
        raise CredentialsError("damaged mosquitto hash %r: %s" % (hashed[:20], e)) from None
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(got, want)


# ---- ACL entries ---------------------------------------------------------------------------

def _check_topic_part(what: str, s: str) -> None:
    # a wildcard would widen the grant to other nodes; a line break would forge ACL lines
    if not s or any(c in s for c in "+#\n\r") or s.startswith("/") or s.endswith("/"):
        raise CredentialsError("%s %r cannot be used in an ACL topic" % (what, s))


def node_topics(node_id: str, prefix: str) -> list[str]:
    """A node's ACL lines: its own outgoing topics (not its cmd topic: commands come from the
    operator) and its own commands to read."""
    _check_topic_part("node id", node_id)
    _check_topic_part("prefix", prefix)
    if "/" in node_id:
        raise CredentialsError("node id %r cannot contain '/'" % node_id)
    base = "%s/%s/" % (prefix, node_id)
    return ["topic write %s%s" % (base, kind) for kind in NODE_WRITES] + ["topic read %scmd" % base]


def collector_topics(prefix: str) -> list[str]:
    _check_topic_part("prefix", prefix)
    return ["topic read %s/#" % prefix]


def operator_topics(prefix: str) -> list[str]:
    _check_topic_part("prefix", prefix)
    return ["topic write %s/+/cmd" % prefix, "topic read %s/#" % prefix]


# ---- the files -----------------------------------------------------------------------------

def _check_user(user: str) -> None:
    # mosquitto_passwd refuses ':' and control characters; a newline would forge a line
    if not user or ":" in user or any(ord(c) < 32 or c == "\x7f" for c in user) or " " in user:
        raise CredentialsError("unusable MQTT user name %r" % user)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace the file in one rename (the broker never reads half a file), keeping an
    existing file's mode and owner (the broker's user must still read it)."""
    st = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777 if st else mode)
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_passwd(path: Path) -> dict[str, str]:
    """{user: hash} of a mosquitto password file (missing file: empty)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        user, sep, h = s.partition(":")
        if not sep or not user or not h:
            raise CredentialsError("%s line %d: not user:hash" % (path, n))
        out[user] = h
    return out


def _set_passwd_lines(text: str, user: str, hashed: str) -> str:
    """The file's lines with user's line replaced in place (or appended); others untouched."""
    lines = text.splitlines()
    out, done = [], False
    for line in lines:
        if line.strip().partition(":")[0] == user and not line.lstrip().startswith("#"):
            if not done:
                out.append("%s:%s" % (user, hashed))
                done = True
            continue  # a second line for the same user would be ambiguous: drop it
        out.append(line)
    if not done:
        out.append("%s:%s" % (user, hashed))
    return "\n".join(out) + "\n"


def parse_acl(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(lines before the first `user` line, [(user, lines of its block)]). A block runs from its
    `user` line to the next one; `pattern` lines inside it stay where they are."""
    head: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and words[0] == "user":
            blocks.append((words[1].strip(), []))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            head.append(line)
    return head, blocks


def _set_acl_block(text: str, user: str, topics: list[str], merge: bool) -> str:
    """Replace user's block with `topics` (merge=True: add the lines it lacks, keep the rest)."""
    head, blocks = parse_acl(text)
    found = False
    new_blocks = []
    for name, body in blocks:
        if name == user:
            if found:
                continue  # one block per user
            found = True
            if merge:
                have = [ln for ln in body if ln.strip()]
                body = have + [t for t in topics if t not in {ln.strip() for ln in have}]
            else:
                # only the user's own `topic` lines go: a `pattern` line or a comment that
                # happens to follow them belongs to everyone
                body = list(topics) + [ln for ln in body if ln.split()[:1] != ["topic"]]
        new_blocks.append((name, body))
    if not found:
        new_blocks.append((user, list(topics)))
    out = [ln for ln in head]
    for name, body in new_blocks:
        if out and out[-1].strip():
            out.append("")
        out.append("user %s" % name)
        out.extend(ln for ln in body if ln.strip())
    return "\n".join(out).lstrip("\n") + "\n"


class BrokerFiles:
    """The broker's password file, ACL file and the service users' passwords in one directory
    (mosquitto.conf: `password_file DIR/passwd`, `acl_file DIR/acl`). Every change holds a
    lock, so two provisioning runs at once do not lose each other's entries."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.passwd = self.dir / PASSWD
        self.acl = self.dir / ACL
        self.users_file = self.dir / SERVICE_USERS

    @contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".townsense.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _text(self, path: Path) -> str:
        return path.read_text() if path.exists() else ""

    # ---- the parts ---------------------------------------------------------------------
    def set_password(self, user: str, hashed: str) -> None:
        _check_user(user)
        if not hashed.startswith("$"):
            raise CredentialsError("refusing to write a plain-text password for %s" % user)
        with self._locked():
            _write_atomic(self.passwd, _set_passwd_lines(self._text(self.passwd), user, hashed), 0o640)

    def set_acl(self, user: str, topics: list[str], merge: bool = False) -> None:
        _check_user(user)
        with self._locked():
            _write_atomic(self.acl, _set_acl_block(self._text(self.acl), user, topics, merge), 0o640)

    def hash_of(self, user: str) -> str | None:
        return read_passwd(self.passwd).get(user)

    # ---- what provisioning does ------------------------------------------------------------
    def add_node(self, node_id: str, hashed: str, prefix: str) -> None:
        """The node's password line and its ACL block (replacing earlier ones: a node has one
        prefix), and the service users' read/write rights on that prefix."""
        topics = node_topics(node_id, prefix)  # checks the names before anything is written
        self.set_password(node_id, hashed)
        self.set_acl(node_id, topics)
        self.service_users(prefix)

    def service_users(self, prefix: str) -> dict[str, tuple[str, str]]:
        """{"collector": (user, password), "operator": (user, password)}: created on first use
        (password file, ACL and service-users.json), their ACL extended to `prefix`."""
        with self._locked():
            known = json.loads(self._text(self.users_file) or "{}")
            changed = False
            for role, user in (("collector", COLLECTOR), ("operator", OPERATOR)):
                entry = known.get(role)
                if not isinstance(entry, dict) or not entry.get("password"):
                    known[role] = {"user": user, "password": new_password()}
                    changed = True
            if changed:
                _write_atomic(self.users_file, json.dumps(known, indent=1) + "\n", 0o600)
            hashes = read_passwd(self.passwd)
            text = self._text(self.passwd)
            for role in ("collector", "operator"):
                user, pw = known[role]["user"], known[role]["password"]
                h = hashes.get(user)
                if h is None or not _verifies(pw, h):
                    text = _set_passwd_lines(text, user, hash_password(pw))
            if text != self._text(self.passwd):
                _write_atomic(self.passwd, text, 0o640)
            acl = self._text(self.acl)
            acl = _set_acl_block(acl, known["collector"]["user"], collector_topics(prefix), merge=True)
            acl = _set_acl_block(acl, known["operator"]["user"], operator_topics(prefix), merge=True)
            if acl != self._text(self.acl):
                _write_atomic(self.acl, acl, 0o640)
        return {role: (known[role]["user"], known[role]["password"]) for role in ("collector", "operator")}

    def read_service_users(self) -> dict[str, tuple[str, str]] | None:
        """The service users without creating anything; None when there are none yet."""
        if not self.users_file.exists():
            return None
        known = json.loads(self.users_file.read_text())
        return {role: (v["user"], v["password"]) for role, v in known.items()}


def _verifies(password: str, hashed: str) -> bool:
    try:
        return verify_password(password, hashed)
    except CredentialsError:
        return False
