"""Builds the realkernel test guest: a Debian kernel and one uncompressed cpio initramfs.

Owns the guest's contents: the kernel of the package ``linux-image-amd64`` depends on, only
the modules LIO, configfs, the e1000 NIC and 9p need (with their dependencies), a minbase
bookworm userland with python3 and Debian's rtslib-fb 2.1.x, the project's runtime and test
dependencies for the guest's python3.11 (``pip install --target``, the guest has no registry
access), PyPI rtslib-fb 2.2.x in its own folder, and ``init.sh`` as PID 1. The project
itself is not copied: the guest mounts the worktree over 9p, so code changes need no rebuild.

The result is cached under ``<cache>/<key>`` (default ``~/.cache/sbps-vm``), the key a hash
of every input: this file, ``init.sh``, the package lists and pins, and the kernel version.
A missing or incomplete cache entry is rebuilt from scratch. Must not: start the guest.

Usage: ``python -m tests.vm.build [--cache DIR] [--force]`` (root, Debian host; needs
debootstrap and cpio, see scripts/install-deps).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
DEB_PACKAGES = ("python3", "python3-rtslib-fb", "kmod", "iproute2")
#: Modules loaded at boot, in order; their dependencies are copied too.
MODULES = ("configfs", "crc32c_generic", "crct10dif_generic", "target_core_mod",
           "target_core_file", "iscsi_target_mod", "e1000", "virtio_pci", "9pnet_virtio",
           "9p")
#: Guest site-packages (``/opt/sbps-deps``): runtime dependencies and the test runner.
PIP_PACKAGES = ("aiohttp", "boto3", "dnspython", "prometheus-client", "pytest",
                "pytest-timeout", "mfusepy")
#: PyPI rtslib-fb in ``/opt/rtslib22`` (prepend to PYTHONPATH to use it).
PIP_RTSLIB = ("rtslib-fb", "pyudev")
PIP_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64",
                 "manylinux_2_34_x86_64", "linux_x86_64")
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "usr/share/i18n", "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf")


@dataclass(frozen=True)
class GuestImage:
    key: str
    dir: Path
    kernel_version: str

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.cpio"


def default_cache() -> Path:
    return Path(os.environ.get("SBPS_VM_CACHE", Path.home() / ".cache" / "sbps-vm"))


def _run(cmd: list[str], **kw: object) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return str(done.stdout)


def kernel_package() -> str:
    """The versioned package linux-image-amd64 depends on (linux-image-6.1.0-N-amd64)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    found = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not found:
        raise RuntimeError(f"no kernel dependency in apt-cache depends output:\n{out}")
    return found.group(1)


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower().replace("_", "-")] = version
    return pins


def _pinned(names: tuple[str, ...]) -> list[str]:
    pins = _pins()
    return [f"{n}=={pins[n]}" if n in pins else n for n in names]


def cache_key(kernel_pkg: str) -> str:
    h = hashlib.sha256()
    for path in (HERE / "build.py", HERE / "init.sh"):
        h.update(path.read_bytes())
    h.update(json.dumps([kernel_pkg, MIRROR, SUITE, DEB_PACKAGES, MODULES,
                         _pinned(PIP_PACKAGES), _pinned(PIP_RTSLIB), PIP_PLATFORMS, TRIM,
                         sys.version_info[:2]]).encode())
    return h.hexdigest()[:16]


def _module_info(ko: Path) -> tuple[list[str], list[str]]:
    """(depends, softdeps) from the module's .modinfo strings."""
    data = ko.read_bytes()
    deps = [d for m in re.findall(rb"\0depends=([^\0]*)", data)
            for d in m.decode().split(",") if d]
    soft = [w for m in re.findall(rb"\0softdep=([^\0]*)", data)
            for w in m.decode().split() if not w.endswith(":")]
    return deps, soft


def copy_modules(kroot: Path, version: str, dest: Path) -> list[str]:
    """Copy MODULES and their (soft) dependencies into ``dest``; returns the names copied."""
    src = kroot / "lib" / "modules" / version
    index = {p.name.removesuffix(".ko").replace("-", "_"): p
             for p in (src / "kernel").rglob("*.ko")}
    wanted, todo = {}, [m.replace("-", "_") for m in MODULES]
    while todo:
        name = todo.pop().replace("-", "_")
        if name in wanted:
            continue
        if name not in index:
            if name in (m.replace("-", "_") for m in MODULES):
                raise RuntimeError(f"module {name} not in {kernel_package()}")
            continue  # a softdep alias such as crc32c-intel that is built in or absent
        wanted[name] = index[name]
        deps, soft = _module_info(index[name])
        todo += deps + soft
    target = dest / "lib" / "modules" / version
    for path in wanted.values():
        out = target / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    for extra in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / extra).exists():
            shutil.copy2(src / extra, target / extra)
    return sorted(wanted)


def _pip_target(dest: Path, packages: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
           "--target", str(dest), "--python-version", "3.11",
           "--implementation", "cp", "--only-binary=:all:"]
    for plat in PIP_PLATFORMS:
        cmd += ["--platform", plat]
    _run(cmd + packages)


def build(dest: Path, log: list[str]) -> str:
    """Build into ``dest`` (empty); returns the kernel version."""
    work = dest / "work"
    work.mkdir()
    try:
        t0 = time.monotonic()
        pkg = kernel_package()
        rootfs = work / "rootfs"
        # debootstrap is the long step (dpkg-bound); fetch the kernel and wheels meanwhile.
        boot = subprocess.Popen(
            ["debootstrap", "--variant=minbase", f"--include={','.join(DEB_PACKAGES)}",
             SUITE, str(rootfs), MIRROR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        _run(["apt-get", "download", pkg], cwd=work)
        deb = next(work.glob(f"{pkg}_*.deb"))
        kroot = work / "kernel"
        _run(["dpkg-deb", "-x", str(deb), str(kroot)])
        version = pkg.removeprefix("linux-image-")
        deps = work / "opt" / "sbps-deps"
        _pip_target(deps, _pinned(PIP_PACKAGES))
        rtslib22 = work / "opt" / "rtslib22"
        _pip_target(rtslib22, _pinned(PIP_RTSLIB))
        log.append(f"kernel and wheels after {time.monotonic() - t0:.1f}s")
        out, _ = boot.communicate()
        if boot.returncode != 0:
            raise RuntimeError(f"debootstrap failed ({boot.returncode}):\n{out[-4000:]}")
        log.append(f"debootstrap done after {time.monotonic() - t0:.1f}s")
        for rel in TRIM:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        shutil.move(str(deps), rootfs / "opt" / "sbps-deps")
        shutil.move(str(rtslib22), rootfs / "opt" / "rtslib22")
        names = copy_modules(kroot, version, rootfs)
        _run(["chroot", str(rootfs), "depmod", version])
        (rootfs / "etc" / "sbps-vm").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc" / "sbps-vm" / "modules").write_text("\n".join(MODULES) + "\n")
        (rootfs / "etc" / "sbps-vm" / "copied-modules").write_text("\n".join(names) + "\n")
        (rootfs / "etc" / "hostname").write_text("sbps-vm\n")
        (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost sbps-vm\n")
        shutil.copy2(HERE / "init.sh", rootfs / "init")
        (rootfs / "init").chmod(0o755)
        shutil.copy2(next((kroot / "boot").glob("vmlinuz-*")), dest / "vmlinuz")
        listing = _run(["find", ".", "-mindepth", "1"], cwd=rootfs)
        with open(dest / "initrd.cpio", "wb") as initrd:
            subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=rootfs,
                           input=listing.encode(), stdout=initrd, check=True)
        log.append(f"initramfs {(dest / 'initrd.cpio').stat().st_size >> 20} MiB after "
                   f"{time.monotonic() - t0:.1f}s")
        return version
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_image(cache: Path | None = None, force: bool = False) -> GuestImage:
    """The cached guest image for the current inputs, built first when missing."""
    cache = cache or default_cache()
    pkg = kernel_package()
    key = cache_key(pkg)
    final = cache / key
    manifest = final / "manifest.json"
    if manifest.exists() and not force:
        info = json.loads(manifest.read_text())
        return GuestImage(key, final, info["kernel_version"])
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the others reuse its result
        if manifest.exists() and not force:
            return ensure_image(cache)
        for stale in cache.iterdir():
            # Partial builds (a killed build) and images of older inputs: 170 MB each.
            if stale.is_dir() and stale.name != key:
                shutil.rmtree(stale, ignore_errors=True)
        return _build_into(cache, key, pkg)


def _build_into(cache: Path, key: str, pkg: str) -> GuestImage:
    final = cache / key
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.partial-", dir=cache))
    log: list[str] = []
    started = time.monotonic()
    try:
        version = build(staging, log)
        info = {"key": key, "kernel_package": pkg, "kernel_version": version,
                "build_seconds": round(time.monotonic() - started, 1), "log": log}
        (staging / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return GuestImage(key, final, version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    image = ensure_image(args.cache, args.force)
    print(json.dumps({"key": image.key, "kernel": str(image.kernel),
                      "initrd": str(image.initrd), "kernel_version": image.kernel_version,
                      "seconds": round(time.monotonic() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
