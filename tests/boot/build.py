"""Builds the boot lane's compute node: the Debian kernel and a minimal initramfs.

Owns the initramfs: static busybox, open-iscsi's ``iscsid``/``iscsiadm`` (Debian 12
packages fetched with ``apt-get download`` and unpacked, never installed on the host) with
the libraries they link, coreutils' ``sha224sum``, the kernel modules an iSCSI root needs
(``iscsi_tcp``, ``sd_mod``, ``squashfs``, ``overlay``, ``loop``, ``e1000``) and the sbps
module's scripts from contrib/dracut/90sbps, run by ``init.sh`` in dracut's order with a
``dracut-lib.sh`` shim. dracut itself is not run (installing it would replace the host's
initramfs tooling and upgrade systemd on a shared machine); the scripts are the same.
The kernel is the one tests/vm/build.py fetches. Cached under
``<cache>/boot-<key>``, the key a hash of every input. Must not: start a guest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.vm.build import REPO, _module_info, _run, default_cache, kernel_package

HERE = Path(__file__).resolve().parent
MODULE_DIR = REPO / "contrib" / "dracut" / "90sbps"
PACKAGES = ("open-iscsi", "libopeniscsiusr", "libisns0")
MODULES = ("e1000", "crc32c_generic", "iscsi_tcp", "sd_mod", "squashfs", "overlay", "loop",
           "virtio_blk", "virtio_pci")
BINARIES = ("sbin/iscsid", "sbin/iscsiadm", "sbin/iscsi-iname", "sbin/iscsistart")


@dataclass(frozen=True)
class NodeImage:
    dir: Path
    kernel_version: str

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.cpio"


def _inputs() -> list[Path]:
    return sorted([HERE / "build.py", HERE / "init.sh", HERE / "dracut-lib.sh",
                   *MODULE_DIR.iterdir()])


def cache_key(kernel_pkg: str) -> str:
    h = hashlib.sha256(json.dumps([kernel_pkg, PACKAGES, MODULES, BINARIES]).encode())
    for path in _inputs():
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _copy_modules(kroot: Path, version: str, dest: Path) -> None:
    src = kroot / "lib" / "modules" / version
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in src.rglob("*.ko")}
    wanted: dict[str, Path] = {}
    todo = list(MODULES)
    while todo:
        name = todo.pop().replace("-", "_")
        if name in wanted or name not in index:
            continue  # built in, or a softdep alias that is absent
        wanted[name] = index[name]
        deps, soft = _module_info(index[name])
        todo += deps + soft
    for path in wanted.values():
        out = dest / "lib" / "modules" / version / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    for extra in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / extra).exists():
            shutil.copy2(src / extra, dest / "lib" / "modules" / version / extra)
    # busybox depmod: kmod is not a host dependency; busybox modprobe reads its modules.dep.
    _run(["busybox", "depmod", "-b", str(dest), version])


def _copy_with_libs(binary: Path, dest: Path, rel: str, libdirs: list[Path]) -> None:
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    env = {"LD_LIBRARY_PATH": ":".join(str(d) for d in libdirs), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env,
                         check=True).stdout
    for lib in re.findall(r"(?:=>\s*)?(/\S+)\s+\(0x", out):
        path = Path(lib)
        for d in libdirs:
            if path.parent == d:
                # A library from the unpacked packages: installed where Debian puts it.
                path_in = Path("usr/lib/x86_64-linux-gnu") / path.name
                break
        else:
            path_in = Path(str(path).lstrip("/"))
        (dest / path_in).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path.resolve(), dest / path_in)


def build(dest: Path) -> str:
    work = dest / "work"
    work.mkdir()
    try:
        pkg = kernel_package()
        _run(["apt-get", "download", pkg, *PACKAGES], cwd=work)
        kroot, oroot = work / "kernel", work / "iscsi"
        _run(["dpkg-deb", "-x", str(next(work.glob(f"{pkg}_*.deb"))), str(kroot)])
        for name in PACKAGES:
            _run(["dpkg-deb", "-x", str(next(work.glob(f"{name}_*.deb"))), str(oroot)])
        version = pkg.removeprefix("linux-image-")
        root = work / "initramfs"
        for d in ("bin", "sbin", "etc/iscsi", "lib", "proc", "sys", "dev", "run", "tmp",
                  "sysroot", "usr/bin", "usr/sbin", "var/lock/iscsi", "var/lib/iscsi"):
            (root / d).mkdir(parents=True, exist_ok=True)
        busybox = shutil.which("busybox")
        if busybox is None:
            raise RuntimeError("busybox-static is not installed (scripts/install-deps)")
        shutil.copy2(busybox, root / "bin" / "busybox")
        applets = _run([busybox, "--list"]).split()
        for applet in applets:
            if not (root / "bin" / applet).exists():
                (root / "bin" / applet).symlink_to("busybox")
        libdirs = sorted({p.parent for p in oroot.rglob("*.so*")})
        for rel in BINARIES:
            _copy_with_libs(oroot / rel, root, rel, libdirs)
        sha224 = shutil.which("sha224sum")
        if sha224 is None:
            raise RuntimeError("coreutils' sha224sum is missing")
        _copy_with_libs(Path(sha224), root, "usr/bin/sha224sum", [])
        (root / "etc" / "iscsi" / "iscsid.conf").write_text(
            "node.startup = manual\nnode.session.timeo.replacement_timeout = 5\n"
            "node.conn[0].timeo.login_timeout = 5\n")
        (root / "etc" / "iscsi" / "initiatorname.iscsi").write_text(
            "InitiatorName=iqn.2023-06.csm.node:boot-lane\n")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        _copy_modules(kroot, version, root)
        shutil.copy2(MODULE_DIR / "sbps-lib.sh", root / "lib" / "sbps-lib.sh")
        shutil.copy2(MODULE_DIR / "sbps-root.sh", root / "lib" / "sbps-root.sh")
        shutil.copy2(MODULE_DIR / "parse-sbps.sh", root / "lib" / "parse-sbps.sh")
        shutil.copy2(MODULE_DIR / "sbps-s3root.sh", root / "sbin" / "sbps-s3root")
        shutil.copy2(HERE / "dracut-lib.sh", root / "lib" / "dracut-lib.sh")
        shutil.copy2(HERE / "init.sh", root / "init")
        for exe in (root / "init", root / "sbin" / "sbps-s3root"):
            exe.chmod(0o755)
        shutil.copy2(next((kroot / "boot").glob("vmlinuz-*")), dest / "vmlinuz")
        listing = _run(["find", ".", "-mindepth", "1"], cwd=root)
        with open(dest / "initrd.cpio", "wb") as out:
            subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=root,
                           input=listing.encode(), stdout=out, check=True)
        return version
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_node(cache: Path | None = None) -> NodeImage:
    """The cached node image for the current inputs, built first when missing."""
    cache = cache or default_cache()
    pkg = kernel_package()
    final = cache / f"boot-{cache_key(pkg)}"
    manifest = final / "manifest.json"
    if manifest.exists():
        return NodeImage(final, json.loads(manifest.read_text())["kernel_version"])
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "boot.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest.exists():
            return ensure_node(cache)
        for stale in cache.glob("boot-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix="boot-partial-", dir=cache))
        try:
            version = build(staging)
            (staging / "manifest.json").write_text(json.dumps(
                {"kernel_package": pkg, "kernel_version": version}) + "\n")
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return NodeImage(final, version)
