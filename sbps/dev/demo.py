"""``sbpsctl demo``: the whole stack on loopback, from an empty directory to a client read.

Owns the demo scenario only: start S3 (moto), the dev IMS server, tgtd and Knot; build a
small real image with ``sbpsctl image build`` and label it; start ``sbps-marshal``; wait
until the image is exported and its DNS records answer; print the catalog, the boot
parameters and the records; prove a real initiator reads the image (SHA-256 equal). Then
keep serving until Ctrl-C (or, with ``--check``, stop at once), stop every process it
started and remove its files. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import dns.message
import dns.query

from sbps.config.render import toml_value
from sbps.dev import devstack
from sbps.dev.initiator import RemoteSession

SYSTEM, DOMAIN = "demo", "sbps.test"
HOST = "ncn-w001"
BUCKET = "boot-images"
ACCESS, SECRET = "demo-access-key", "demo-secret-key-not-for-production"


class DemoFailed(Exception):
    """A step of the demo did not do what it should; the message says which."""


class Demo:
    def __init__(self, out: TextIO = sys.stdout, keep: bool = False) -> None:
        self.out = out
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="sbps-demo-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tgtd: devstack.Tgtd | None = None
        self.t0 = time.monotonic()
        self.step = 0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def stage(self, what: str) -> Iterator[None]:
        self.step += 1
        print(f"[{self.step:2}] {what} ...", end="", file=self.out, flush=True)
        started = time.monotonic()
        yield
        print(f" done ({time.monotonic() - started:.1f} s)", file=self.out, flush=True)

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.marshal is not None and self.marshal.poll() is not None:
                raise DemoFailed(f"sbps-marshal exited ({self.marshal.returncode}) while "
                                 f"waiting for {what}; see {self.dir / 'marshal.log'}")
            time.sleep(0.2)
        raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")

    marshal: subprocess.Popen[bytes] | None = None

    def run(self, check: bool) -> int:
        try:
            self._scenario()
            self.say(f"\nAll checks passed in {time.monotonic() - self.t0:.1f} s.")
            if not check:
                self._serve()
            return 0
        except (DemoFailed, devstack.DevStackError, OSError, subprocess.SubprocessError) as exc:
            self.say(f"\nFAILED: {exc}")
            return 1
        finally:
            self.close()

    def _scenario(self) -> None:
        with self.stage("starting S3 (moto) on 127.0.0.1"):
            proc, self.s3 = devstack.start_moto(self.dir)
            self.procs.append(proc)
            _boto(self.s3).create_bucket(Bucket=BUCKET)
        with self.stage("starting the development IMS server"):
            proc, self.ims = devstack.start_ims(self.dir)
            self.procs.append(proc)
        with self.stage("starting tgtd (userspace iSCSI target)"):
            self.tgtd = devstack.start_tgtd(self.dir)
        with self.stage("starting Knot DNS (RFC 2136 with TSIG)"):
            knot = devstack.start_knot(self.dir, [f"{SYSTEM}.{DOMAIN}",
                                                  f"hsn.{SYSTEM}.{DOMAIN}",
                                                  f"nmn.{SYSTEM}.{DOMAIN}"])
            self.procs.append(knot.proc)
            self.dns_port = knot.port
        self.config = self._write_config(knot)
        with self.stage("building a real squashfs image and publishing it (image build)"):
            built = self._build_image()
            self.image_id = built["image_id"]
            self.rootfs = built["rootfs"]
        with self.stage("starting sbps-marshal"):
            with open(self.dir / "marshal.log", "ab") as log:
                self.marshal = subprocess.Popen(
                    [sys.executable, "-m", "sbps.daemon.main", "--config", str(self.config)],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            url_file = self.dir / "state" / "http-url"
            self.api = self.wait("the HTTP API", lambda: url_file.exists()
                                 and url_file.read_text().strip())
        with self.stage("waiting for the image to be exported"):
            self.entry = self.wait("the export", self._exported)
        with self.stage("waiting for the DNS records to answer"):
            self.records = self.wait("SRV and A records", self._records)
        self._show()
        with self.stage("reading the whole LUN with a real iSCSI initiator"):
            summary = self._read_back()
        self.say(f"     {summary}")

    def _write_config(self, knot: devstack.Knot) -> Path:
        creds = self.dir / "s3-credentials"
        creds.write_text(f"{ACCESS}:{SECRET}\n")
        creds.chmod(0o600)
        assert self.tgtd is not None
        settings: dict[str, dict[str, Any]] = {
            "node": {"hostname": HOST, "system_name": SYSTEM, "site_domain": DOMAIN},
            "catalog": {"api_gateway": self.ims, "ims_uri": "v3/images"},
            "s3": {"endpoint": self.s3, "bucket": BUCKET, "credential_file": str(creds)},
            "stage": {"cache_dir": str(self.dir / "cache")},
            "target": {"backend": "tgt", "tgt_control_port": self.tgtd.control_port,
                       "portals": [f"127.0.0.1:{self.tgtd.port}"], "port": self.tgtd.port},
            "dns": {"mode": "rfc2136", "server": "127.0.0.1", "port": knot.port,
                    "tsig_key_file": str(knot.key_file), "ttl": 60,
                    "hsn_address": "127.0.0.1", "nmn_address": "127.0.0.1"},
            "http": {"port": 0},
            "reconcile": {"interval": "5s", "state_dir": str(self.dir / "state")},
        }
        lines = []
        for section, body in settings.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(tuple(v) if isinstance(v, list) else v)}"
                      for k, v in body.items()]
        path = self.dir / "marshal.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _build_image(self) -> dict[str, Any]:
        tree = self.dir / "rootfs"
        build_rootfs(tree)
        r = self._sbpsctl("image", "build", str(tree), "--name", "sbps-demo", "--json",
                          "--boot-params", "console=ttyS0,115200 rd.retry=10")
        return dict(json.loads(r))

    def _sbpsctl(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-c", "from sbps.cli import run; run()",
                            "--config", str(self.config), *args],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise DemoFailed(f"sbpsctl {' '.join(args[:2])} failed: {r.stderr.strip()[-800:]}")
        return r.stdout

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.api}{path}", timeout=30) as r:
            return json.loads(r.read())

    def _exported(self) -> dict[str, Any] | None:
        body = self._get("/v1/images")
        return next((i for i in body["images"] if i["ims_id"] == self.image_id
                     and i["state"] == "exported"), None)

    def _records(self) -> dict[str, list[str]] | None:
        out: dict[str, list[str]] = {}
        for net in ("hsn", "nmn"):
            srv = f"_sbps-{net}._tcp.{SYSTEM}.{DOMAIN}."
            host = f"iscsi-server-id-001.{net}.{SYSTEM}.{DOMAIN}."
            for name, rdtype in ((srv, "SRV"), (host, "A")):
                r = dns.query.tcp(dns.message.make_query(name, rdtype), "127.0.0.1",
                                  timeout=3, port=self.dns_port)
                rdata = [rd.to_text() for rrset in r.answer for rd in rrset]
                if not rdata:
                    return None
                out[f"{name} {rdtype}"] = rdata
        return out

    def _show(self) -> None:
        e = self.entry
        self.say("\nCatalog (GET /v1/images):")
        self.say(f"  image {e['ims_id']}  {e['name']}  LUN {e['lun_id']}  {e['size']} bytes")
        self.say(f"  serial {e['serial']}  WWID {e['wwid']}  state {e['state']}")
        boot = self._get(f"/v1/bootparams/{self.image_id}?network=hsn")
        self.say("\nBoot parameters (GET /v1/bootparams):")
        self.say(f"  {boot['cmdline']}")
        self.say("\nDNS records (queried from Knot):")
        for name, rdata in self.records.items():
            self.say(f"  {name}: {', '.join(rdata)}")
        self.say("")

    def _read_back(self) -> str:
        assert self.tgtd is not None
        target = self._get("/v1/target")["iqn"]
        session = RemoteSession(f"127.0.0.1:{self.tgtd.port}", target, self.entry["lun_id"],
                                timeout=60)
        try:
            serial = session.call("serial")
            digest, size = session.call("read_all", timeout=120)
        finally:
            session.close()
        body = _boto(self.s3).get_object(Bucket=BUCKET, Key=self.rootfs["path"].split("/", 3)[3])
        expected = hashlib.sha256(body["Body"].read()).hexdigest()
        if serial != self.entry["serial"] or digest != expected:
            raise DemoFailed(f"the LUN read back differs: serial {serial}, sha256 {digest}, "
                             f"expected {self.entry['serial']} and {expected}")
        return f"serial {serial}, {size} bytes, sha256 {digest[:16]}...: equal to S3"

    def _serve(self) -> None:
        shell = self._sbpsctl_shell()
        self.say(f"sbpsctl:  {Path(sys.executable).parent / 'sbpsctl'} --config {self.config} "
                 "status")
        self.say(f"          (the admin token it reads: {self.dir / 'state' / 'admin-token'})")
        self.say(f"Shell:    . {shell}")
        self.say("          (or `make demo-shell`): sbpsctl on PATH, bound to this demo")
        self.say(f"API:      {self.api}/v1/images")
        self.say(f"Metrics:  {self.api}/metrics")
        self.say(f"Portal:   iscsi://127.0.0.1:{self.tgtd.port if self.tgtd else '?'}")
        self.say(f"Files:    {self.dir}\nServing; press Ctrl-C to stop and clean up.")
        wanted = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
        try:
            got = signal.sigwait(wanted)
            self.say(f"\n{signal.Signals(got).name}: stopping every process and removing "
                     f"{self.dir}")
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)

    def _sbpsctl_shell(self) -> Path:
        """``<dir>/bin/sbpsctl`` bound to the demo's configuration, and ``<dir>/env.sh``
        that puts it on PATH (``make demo-shell`` sources the newest one)."""
        bindir = self.dir / "bin"
        bindir.mkdir(exist_ok=True)
        wrapper = bindir / "sbpsctl"
        wrapper.write_text(f"#!/bin/sh\nexec {Path(sys.executable).parent / 'sbpsctl'} "
                           f"--config {self.config} \"$@\"\n")
        wrapper.chmod(0o755)
        env = self.dir / "env.sh"
        env.write_text(f"export PATH={bindir}:$PATH\nPS1='(sbps-demo) '\"${{PS1:-$ }}\"\n"
                       "echo 'sbpsctl talks to the demo: try sbpsctl status, sbpsctl images'\n")
        return env

    def close(self) -> None:
        if self.marshal is not None:
            devstack.stop(self.marshal, timeout=30)
        if self.tgtd is not None:
            devstack.stop_tgtd(self.tgtd)
        for proc in reversed(self.procs):
            devstack.stop(proc)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


#: Programs of the demo's root file system (busybox applets), enough to boot to a shell.
_APPLETS = ("sh", "ls", "cat", "echo", "mount", "umount", "poweroff", "sleep", "uname",
            "dmesg", "ps", "mkdir", "ln", "readlink", "blkid", "hexdump", "head", "grep")


def build_rootfs(tree: Path) -> None:
    """A small real root file system: static busybox with its applets and an ``/sbin/init``
    that mounts /proc, /sys and /dev, prints a marker and the root device's WWID, then powers
    off (the diskless-boot lane boots the same tree)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise DemoFailed("busybox is not installed (apt-get install busybox-static)")
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "usr/bin", "root"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, tree / "bin" / "busybox")
    for applet in _APPLETS:
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "etc/os-release").write_text('NAME="sbps demo"\nID=sbps-demo\n')
    (tree / "etc/motd").write_text("booted through SBPS\n")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "usr/bin/hello").write_text("#!/bin/sh\necho hello from sbps\n")
    (tree / "usr/bin/hello").chmod(0o755)
    init = tree / "sbin" / "init"
    init.write_text("""#!/bin/sh
# The demo image's init: prove the root came through SBPS, then power off.
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
root=$(grep ' / ' /proc/mounts | head -n 1)
echo "SBPS-DEMO-ROOT-OK: $(cat /etc/motd)"
echo "SBPS-DEMO-ROOT-MOUNT: $root"
for d in /sys/block/*/device/wwid; do [ -r "$d" ] && echo "SBPS-DEMO-WWID: $d $(cat "$d")"; done
poweroff -f
""")
    init.chmod(0o755)


def _boto(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                        config=Config(s3={"addressing_style": "path"}))
