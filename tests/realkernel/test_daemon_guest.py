"""The whole marshal inside the guest on real kernel LIO, with S3 (moto) and the dev IMS server
on the host reached through qemu guest forwards; a host initiator (libiscsi) reads the LUN
through the forwarded portal only, never the address discovery returns (10.0.2.15)."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from sbps.core import identity
from sbps.core.model import Identity
from tests.fixtures.images import PROJECT_LABEL, UploadedImage
from tests.fixtures.iscsi import DATA_PROTECT, INITIATOR, RemoteSession
from tests.fixtures.servers import IMSServer, S3Server
from tests.fixtures.unit_confine import setpriv_argv
from tests.realkernel.conftest import IMS_GUEST, S3_GUEST
from tests.vm.qemu import Guest

# Software emulation: the guest build and boot land in the first test's setup.
pytestmark = pytest.mark.timeout(1800)

TREE = "/src/tests/realkernel/guest/lio_tree.py"
TARGET = "/sys/kernel/config/target"
HOSTNAME = "ncn-w001"
IQN = f"iqn.2023-06.csm.iscsi:{HOSTNAME}"


def guest_json(guest: Guest, *args: str) -> Any:
    return json.loads(guest.run(["python3", TREE, *args]).stdout.splitlines()[-1])


def toml(settings: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, body in settings.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


class GuestMarshal:
    """One sbps-marshal process in the guest; its log is in the shared /out folder."""

    def __init__(self, guest: Guest, s3_bucket: str, credentials: str) -> None:
        self.guest = guest
        self.root = f"/var/lib/sbps-test/{uuid.uuid4().hex[:8]}"
        self.pid: int | None = None
        self.logs: list[Path] = []
        settings = {
            "node": {"hostname": HOSTNAME, "system_name": "sys", "site_domain": "example.test"},
            "catalog": {"api_gateway": f"http://{IMS_GUEST[0]}:{IMS_GUEST[1]}",
                        "ims_uri": "v3/images", "timeout": 20},
            "s3": {"endpoint": f"http://{S3_GUEST[0]}:{S3_GUEST[1]}", "bucket": s3_bucket,
                   "credential_file": f"{self.root}/ims.s3fs", "timeout": 30},
            "stage": {"cache_dir": f"{self.root}/cache", "part_size": "8MiB"},
            "target": {"backend": "lio", "configfs_root": TARGET,
                       "saveconfig_path": f"{self.root}/saveconfig.json",
                       "portals": ["10.0.2.15:3260"]},
            "reconcile": {"interval": "1s", "state_dir": f"{self.root}/state",
                          "retire_grace": "3s", "backoff_initial": "1s"},
            "http": {"port": 0},
            "log": {"format": "json"},
        }
        guest.sh(f"mkdir -p {self.root}/state {self.root}/cache && umask 077 && "
                 f"cat > {self.root}/ims.s3fs", input=credentials)
        guest.sh(f"cat > {self.root}/marshal.toml", input=toml(settings))

    def start(self) -> None:
        log = f"marshal-{Path(self.root).name}-{len(self.logs)}.log"
        self.logs.append(self.guest.out / log)
        # Under the unit's capability bounding set and NoNewPrivileges (what can be applied
        # without systemd): the real kernel says whether those capabilities are enough.
        self.pid = self.guest.spawn([*setpriv_argv(), "python3", "-m", "sbps.daemon.main",
                                     "--config", f"{self.root}/marshal.toml", "--debug"],
                                    f"/out/{log}")

    def log(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def alive(self) -> bool:
        return self.pid is not None and self.guest.poll(self.pid) is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.pid is None:
            return None
        self.guest.signal(self.pid, sig)
        rc = self.guest.wait(self.pid, 60)
        self.pid = None
        return rc

    def luns(self) -> dict[int, dict[str, str]]:
        raw = guest_json(self.guest, "luns", TARGET, IQN)["luns"]
        return {int(k): v for k, v in raw.items()}


def wait_until(what: str, check: Callable[[], Any], marshal: GuestMarshal,
               timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if not marshal.alive():
            raise AssertionError(f"marshal exited while waiting for {what}:\n"
                                 f"{marshal.log()[-4000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n"
                         f"{marshal.log()[-4000:]}")


@pytest.fixture
def marshal(guest: Guest, s3_server: S3Server, s3_bucket: str, s3_credential_file: Path,
            ims_server: IMSServer) -> Iterator[GuestMarshal]:
    guest.forwards["s3"].point(int(urlparse(s3_server.endpoint).port or 0))
    guest.forwards["ims"].point(int(urlparse(ims_server.url).port or 0))
    guest_json(guest, "clear", TARGET)
    m = GuestMarshal(guest, s3_bucket, s3_credential_file.read_text())
    try:
        yield m
    finally:
        if m.pid is not None:
            m.stop(signal.SIGKILL)
        guest_json(guest, "clear", TARGET)
        guest.run(["rm", "-rf", m.root])


@contextmanager
def reading(session: RemoteSession, every: float = 0.5) -> Iterator[None]:
    """A booted node's traffic: one small READ16 every ``every`` seconds."""
    stop = threading.Event()
    errors: list[str] = []

    def loop() -> None:
        while not stop.wait(every):
            try:
                session.call("read", 0, 8, 512)
            except Exception as exc:  # reported by the test below
                errors.append(str(exc))
                return

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors


def s3_sha256(s3_client: Any, url: str) -> tuple[str, int]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest(), len(body)


def test_daemon_exports_reads_restarts_and_retires_on_the_real_kernel(
        guest: Guest, marshal: GuestMarshal, ims_server: IMSServer, s3_client: Any,
        upload_ims_image: Callable[..., UploadedImage], capsys: pytest.CaptureFixture[str]
) -> None:
    up = upload_ims_image("compute", label=False, random_bytes=3 << 20)
    ident: Identity = identity.rootfs(up.rootfs_url, up.rootfs_etag)
    marshal.start()

    # Label: the image is staged from S3 and exported.
    ims_server.set_label(up.ims_id, PROJECT_LABEL)
    lun = wait_until("the labelled image to be exported",
                     lambda: next((n for n, x in marshal.luns().items()
                                   if x["serial"] == ident.serial), None), marshal)
    assert marshal.luns()[lun]["name"] == ident.name

    # The bytes, the identity and the protection, as a node sees them (forwarded portal).
    with RemoteSession(guest.iscsi_portal, IQN, lun, timeout=120) as session:
        vendor, product = session.call("inquiry")
        serial = session.call("serial")
        designators = session.call("designators")
        digest, nbytes = session.call("read_all")
        probe = session.call("write_probe")
        counters = guest_json(guest, "backend", IQN, f"{marshal.root}/cache")
    want_digest, want_size = s3_sha256(s3_client, up.rootfs_url)
    assert (digest, nbytes) == (want_digest, want_size)
    assert (vendor, product) == ("LIO-ORG", ident.product_id)
    # LIO counts the C string's terminating NUL in the page length (tgt pads with spaces).
    assert serial.rstrip("\0") == ident.serial
    naa = [d for d in designators if d.type == 3 and d.association == 0]
    with capsys.disabled():
        print(f"\nVPD 0x80 {serial!r}; VPD 0x83 {designators}; expected WWID {ident.wwid}")
    assert len(naa) == 1, designators
    assert "3" + naa[0].value == ident.wwid, (naa, ident.wwid)
    assert probe.key == DATA_PROTECT, probe
    assert counters["stats"][str(lun)]["read_bytes"] >= (nbytes >> 20) << 20
    assert counters["stats"][str(lun)]["commands"] > 0
    assert INITIATOR in counters["sessions"], counters

    # Restart (SIGKILL, then start again): nothing in the configuration changes.
    before = guest_json(guest, "dump", TARGET, "--config")["tree"]
    marshal.stop(signal.SIGKILL)
    marshal.start()
    wait_until("two passes after the restart", lambda: "pass 2 finished" in marshal.log(),
               marshal)
    after = guest_json(guest, "dump", TARGET, "--config")["tree"]
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, changed
    applied = [r["msg"] for r in marshal.records() if str(r.get("msg", "")).startswith(
        "applied ")]
    assert not applied, applied

    # Unlabel: the LUN stays while a node reads, and goes once reads stop.
    with RemoteSession(guest.iscsi_portal, IQN, lun, timeout=120) as session, reading(session):
        mark = len(marshal.log())
        ims_server.remove_label(up.ims_id, PROJECT_LABEL)
        wait_until("two passes after the unlabel",
                   lambda: marshal.log()[mark:].count(" finished in ") >= 2, marshal)
        time.sleep(8)  # well past the 3 s grace, reads continuing
        assert lun in marshal.luns(), marshal.log()[-3000:]
    wait_until("the idle LUN to be retired", lambda: lun not in marshal.luns(), marshal)
    assert marshal.stop() == 0
