"""Type-check firmware/ against the MicroPython ESP32 stubs (micropython-esp32-stubs), so every
call into machine, network, esp32, time... matches the real API.

mypy reads the stubs' standard library (micropython-stdlib-stubs) as its typeshed, and the
port's modules from a stub directory gathered from the installed stub distributions."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB_DISTS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")


def stub_dir(dest: Path) -> Path:
    """Copy the port's .pyi modules (and the _mpy_shed helpers) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for dist in STUB_DISTS:
        for f in metadata.files(dist) or []:
            s = str(f)
            if s.endswith(".pyi") and not s.startswith("stdlib/"):
                src = Path(f.locate())
                out = dest / s
                out.parent.mkdir(parents=True, exist_ok=True)
                if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
                    shutil.copyfile(src, out)
    return dest


def run(paths: list[str] | None = None, extra: list[str] | None = None) -> tuple[int, str]:
    from mypy import api

    typeshed = Path(sysconfig.get_paths()["purelib"])
    if not (typeshed / "stdlib" / "VERSIONS").exists():
        raise FileNotFoundError("micropython-stdlib-stubs is not installed")
    stubs = stub_dir(ROOT / "build" / "stubs")
    import os

    os.environ["MYPYPATH"] = os.pathsep.join([str(stubs), str(ROOT / "firmware" / "lib")])
    # The stubs have a few errors of their own (stubber artefacts): they are the reference,
    # not the code under test, so their errors are silenced.
    mods = sorted({p.relative_to(stubs).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
                   for p in stubs.rglob("*.pyi")})
    ini = ROOT / "build" / "mypy-firmware.ini"
    ini.write_text("[mypy]\n\n[mypy-%s]\nignore_errors = True\n" % ",".join(mods + ["_mpy_shed.*"]))
    args = ["--config-file", str(ini), "--custom-typeshed-dir", str(typeshed), "--no-site-packages", "--explicit-package-bases",
            "--python-version", "3.11", "--cache-dir", str(ROOT / "build" / "mypy-cache"),
            "--check-untyped-defs", "--no-error-summary"] + (extra or [])
    targets = paths or [str(ROOT / "firmware" / "main.py"), str(ROOT / "firmware" / "lib")]
    out, err, code = api.run(args + targets)
    return code, out + err


def main() -> int:
    code, out = run(sys.argv[1:] or None)
    print(out, end="")
    print("type check of firmware/ against micropython-esp32-stubs: %s" % ("clean" if code == 0 else "FAILED"))
    return code


if __name__ == "__main__":
    sys.exit(main())
