"""Which build of argon2 this process runs; run as a module, the install step that compiles it for this CPU.

libargon2 chooses how it fills memory blocks when it is compiled: with AVX-512, AVX2, SSSE3 or SSE2
instructions (its opt.c) or in portable C (ref.c). argon2-cffi-bindings' x86-64 wheel on PyPI is built
for every x86-64 CPU, so it runs the SSE2 code; compiled here with `-march=native` the same library runs
the widest code this CPU has, and verifies a password about twice as fast.

    python -m authgres.argon2_build [CFLAGS]    (make install runs it with ARGON2_CFLAGS, default -march=native)

compiles the installed version of argon2-cffi-bindings from its sdist with those flags (plus
-frecord-gcc-switches, which is how `build_info` later tells what the compiler targeted), checks that the
result verifies a known hash, and installs it. It does nothing when the same version was already built
with the same flags; with no flags it puts the wheel back. Without a C compiler, or when the build
fails, the wheel stays and the install goes on.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import argon2

DISTRIBUTION = "argon2-cffi-bindings"
_RECORD_SWITCHES = "-frecord-gcc-switches"
# What each x86-64 microarchitecture level lets libargon2 use; -march=native is recorded expanded.
_LEVELS = {
    "x86-64-v2": {"ssse3"},
    "x86-64-v3": {"ssse3", "avx2"},
    "x86-64-v4": {"ssse3", "avx2", "avx512f"},
}


@dataclass(frozen=True)
class Argon2Build:
    version: str  # of argon2-cffi-bindings
    origin: str  # "wheel": a prebuilt wheel; "source": compiled on an install
    tag: str  # the wheel's platform tag
    switches: str | None  # what the compiler recorded (-frecord-gcc-switches), if it did
    code: str  # libargon2's code path: "AVX-512", "AVX2", "SSSE3", "SSE2", "portable C" or "unknown"

    @property
    def march(self) -> str | None:
        flags = [s for s in (self.switches or "").split() if s.startswith("-march=")]
        return flags[-1].removeprefix("-march=") if flags else None

    def describe(self) -> str:
        if self.origin == "wheel":
            return f"argon2-cffi-bindings {self.version}, prebuilt wheel ({self.tag}): {self.code} code"
        target = f"-march={self.march}" if self.march else "compiler switches not recorded"
        return f"argon2-cffi-bindings {self.version}, compiled from source ({target}): {self.code} code"


@functools.cache
def build_info() -> Argon2Build:
    """The build of argon2-cffi-bindings this interpreter imports."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    platforms = [tag.rsplit("-", 1)[-1] for tag in _wheel_tags(dist)]
    spec = importlib.util.find_spec("_argon2_cffi_bindings._ffi")
    section = _elf_section(spec.origin, b".GCC.command.line") if spec and spec.origin else None
    switches = section.split(b"\0")[0].decode(errors="replace") if section else None
    # PyPI accepts no wheel tagged linux_*: such a wheel was built where it is installed.
    source = switches is not None or any(p.startswith("linux_") for p in platforms)
    x86 = platform.machine().lower() in {"x86_64", "amd64", "i686", "x86"}
    if not x86:
        code = "portable C"
    elif not source:
        code = "SSE2"  # the upstream build passes -msse2 and nothing wider
    elif switches is None:
        code = "unknown"
    else:
        code = code_path(switches)
    return Argon2Build(dist.version, "source" if source else "wheel", ".".join(platforms) or "?", switches, code)


def _wheel_tags(dist: importlib.metadata.Distribution) -> list[str]:
    lines = (dist.read_text("WHEEL") or "").splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]


def code_path(switches: str) -> str:
    """libargon2's opt.c path for these compiler switches (its #if on __AVX512F__, __AVX2__, __SSSE3__)."""
    enabled: set[str] = set()
    for switch in switches.split():
        if switch.startswith("-march="):
            march = switch.removeprefix("-march=")
            if march == "native":  # recorded unexpanded (not by gcc): the building CPU's, unknown here
                return "unknown"
            enabled = set(_LEVELS.get(march, set()))
    for switch in switches.split():  # -m switches override -march wherever they stand
        if switch.startswith("-mno-"):
            enabled.discard(switch.removeprefix("-mno-"))
        elif switch.startswith("-m") and not switch.startswith(("-march=", "-mtune=")):
            enabled.add(switch.removeprefix("-m"))
    if "avx512f" in enabled:
        return "AVX-512"
    if "avx2" in enabled:
        return "AVX2"
    return "SSSE3" if "ssse3" in enabled else "SSE2"


def _elf_section(path: str, name: bytes) -> bytes | None:
    """The contents of a section of a 64-bit little-endian ELF file, or None."""
    try:
        data = Path(path).read_bytes()
        if data[:6] != b"\x7fELF\x02\x01":
            return None
        (table,) = struct.unpack_from("<Q", data, 0x28)
        size, count, names = struct.unpack_from("<HHH", data, 0x3A)

        def header(index: int) -> tuple[int, ...]:
            return struct.unpack_from("<IIQQQQIIQQ", data, table + index * size)

        strings = header(names)[4]
        for index in range(count):
            entry = header(index)
            start = strings + entry[0]
            if data[start : data.index(b"\0", start)] == name:
                return data[entry[4] : entry[4] + entry[5]]
    except (OSError, ValueError, struct.error):
        return None
    return None


# Made by another implementation (OpenSSL 3's argon2id, through cryptography) with the service's default
# parameters: a build that does not verify it, or that accepts a wrong password, is not installed.
KNOWN_HASH = "$argon2id$v=19$m=19456,t=2,p=1$YXV0aGdyZXMta25vd24tc2FsdA$8P5hxhh/Am3lyi4YtXAeseJgoDGLQDrWiknDe3BFuAg"
KNOWN_PASSWORD = "correct horse battery staple"


def fastest_verify(verify: Callable[[], object], times: int = 3) -> float:
    """Seconds the fastest of a few calls took: a thread's first verifies also fault its memory in."""
    fastest = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        verify()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def check() -> str:
    """Verifies the known hash with the argon2 this interpreter imports; what runs and one verify's time."""
    hasher = argon2.PasswordHasher()
    took = fastest_verify(lambda: hasher.verify(KNOWN_HASH, KNOWN_PASSWORD))
    try:
        hasher.verify(KNOWN_HASH, KNOWN_PASSWORD + "!")
    except argon2.exceptions.VerifyMismatchError:
        return f"{build_info().describe()}; one verify {took * 1000:.1f} ms"
    raise SystemExit("argon2: a wrong password verified")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        print(check())
        return 0
    venv = Path(sys.prefix)
    with (venv / ".argon2-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two makes at once in one checkout install once
        return _install(" ".join(" ".join(args).split()), venv / ".argon2-build")


def _install(flags: str, stamp: Path) -> int:
    version = importlib.metadata.version(DISTRIBUTION)
    installed = build_info()
    if not flags:
        if installed.origin == "source":
            print("argon2: ARGON2_CFLAGS is empty: reinstalling the prebuilt wheel", flush=True)
            _pip("install", "--force-reinstall", "--only-binary", DISTRIBUTION, f"{DISTRIBUTION}=={version}")
        stamp.unlink(missing_ok=True)
        return 0
    wanted = f"{version} {flags}"
    done = stamp.read_text() if stamp.exists() else ""
    if done == wanted and installed.origin == "source":
        return 0
    if done == f"{wanted} failed":
        print(f"argon2: keeping the prebuilt wheel, compiling with {flags} failed before (rm {stamp} to retry)")
        return 0
    compiler = os.environ.get("CC", "").split() or [next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), "")]
    if not shutil.which(compiler[0]):
        print("argon2: no C compiler: keeping the prebuilt wheel (SSE2 code, slower verifies)")
        return 0
    cflags = flags if _RECORD_SWITCHES in flags.split() else f"{flags} {_RECORD_SWITCHES}"
    print(f"argon2: compiling argon2-cffi-bindings {version} with CFLAGS='{cflags}'", flush=True)
    with tempfile.TemporaryDirectory(prefix="argon2-build-") as tmp:
        # --no-cache-dir: pip would otherwise reuse a wheel it built earlier with other flags.
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "-w", tmp]
        built = subprocess.run(
            [*pip_wheel, "--no-binary", DISTRIBUTION, f"{DISTRIBUTION}=={version}"],
            env={**os.environ, "CFLAGS": cflags},
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if built.returncode != 0 or len(wheels) != 1:
            return _failed(stamp, wanted, "the build failed", built.stdout + built.stderr)
        # Checked before it is installed, so that a build this CPU cannot run never replaces the wheel.
        unpacked = Path(tmp) / "unpacked"
        shutil.unpack_archive(wheels[0], unpacked, "zip")
        checked = subprocess.run(
            [sys.executable, "-m", "authgres.argon2_build", "--check"],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(unpacked), os.getenv("PYTHONPATH")]))},
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode < 0:  # SIGILL: the flags target instructions this CPU lacks
            what = f"the built library died of {signal.Signals(-checked.returncode).name} in its check"
            return _failed(stamp, wanted, what, checked.stdout + checked.stderr)
        if checked.returncode != 0:
            return _failed(stamp, wanted, "the built library failed its check", checked.stdout + checked.stderr)
        _pip("install", "--force-reinstall", "--no-index", str(wheels[0]))
    stamp.write_text(wanted)
    print(f"argon2: installed {checked.stdout.strip()}")
    return 0


def _failed(stamp: Path, wanted: str, what: str, output: str) -> int:
    tail = output.strip().splitlines()[-15:]
    print(*tail, f"argon2: {what}: keeping the prebuilt wheel (rm {stamp} to retry)", sep="\n", file=sys.stderr)
    stamp.write_text(f"{wanted} failed")
    return 0


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args, "--no-deps"], check=True)


if __name__ == "__main__":
    sys.exit(main())
