"""Start-up shared by the reconciler benchmarks: moto, the dev IMS server, a counting proxy in
front of moto, small real images in S3 and IMS, a pre-staged cache, and marshal workers.

Everything runs on 127.0.0.1 in a scratch directory: moto_server and the dev IMS server as
subprocesses, the counting proxy (tests/fixtures/proxy.py) in a child process of its own so
its CPU never counts as the benchmark's, each worker as a real ``sbps.daemon.main`` subprocess
(tests/fixtures/marshal.Worker) on its own configfs emulation mount. ``Env.close()`` stops
every process by its pid, unmounts every emulation and removes the scratch directory.
Must not measure anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from configfs import mounted  # noqa: E402
from sbps.config import StageConfig, load  # noqa: E402
from sbps.core import identity  # noqa: E402
from sbps.core.model import DesiredImage, ImageKind, ObjectInfo  # noqa: E402
from sbps.imagebuild.squashfs import make_squashfs  # noqa: E402
from sbps.imagebuild.upload import upload_image  # noqa: E402
from sbps.sources.s3 import S3, Credentials  # noqa: E402
from sbps.sources.stager import Stager  # noqa: E402
from tests.fixtures.images import PROJECT_LABEL  # noqa: E402
from tests.fixtures.marshal import Worker  # noqa: E402
from tests.fixtures.servers import (  # noqa: E402
    ACCESS_KEY,
    SECRET_KEY,
    IMSServer,
    S3Server,
    free_port,
    start_ims_server,
    stop_process,
    wait_port,
)

BUCKET = "boot-images"


# --- the counting proxy, in its own process ----------------------------------------------

def _proxy_main(upstream: str, conn: Connection) -> None:
    from tests.fixtures.proxy import FaultProxy

    proxy = FaultProxy(upstream).start()
    conn.send(proxy.port)
    try:
        while True:
            cmd = conn.recv()
            if cmd == "stop":
                break
            if cmd == "reset":
                proxy.reset_counts()
                conn.send(None)
            elif cmd == "seen":
                conn.send([(s.method, s.path, s.query) for s in proxy.requests()])
    finally:
        proxy.stop()


class CountingProxy:
    """tests/fixtures/proxy.FaultProxy in a child process; S3 requests by kind."""

    def __init__(self, upstream: str) -> None:
        self._conn, child = mp.Pipe()
        self._proc = mp.get_context("fork").Process(target=_proxy_main, args=(upstream, child),
                                                    daemon=True, name="s3-count-proxy")
        self._proc.start()
        self.port = int(self._conn.recv())
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def counts(self) -> Counter[str]:
        """S3 requests since the last reset, by kind: LIST (GET on a bucket with a listing
        query), GET, HEAD, PUT, POST, DELETE."""
        self._conn.send("seen")
        out: Counter[str] = Counter()
        for method, path, query in self._conn.recv():
            bucket_only = path.strip("/").count("/") == 0
            if method == "GET" and bucket_only and ("list-type" in query or "prefix" in query
                                                    or not query):
                out["LIST"] += 1
            else:
                out[method] += 1
        return out

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send("stop")
            self._proc.join(15)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()


# --- the environment ------------------------------------------------------------------------

class BenchWorker(Worker):
    """A marshal subprocess logging at info level (debug logging would be measured too)."""

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "sbps.daemon.main", "--config", str(self.config_path),
                *extra]

    def start(self, **env: str) -> None:
        # A restarted worker writes a new URL; the old one must not be read meanwhile.
        (self.root / "state/http-url").unlink(missing_ok=True)
        super().start(**env)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def api(self, timeout: float = 60) -> str:
        path = self.root / "state/http-url"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.hostname} exited ({self.proc.returncode}):\n"
                                   f"{self.log()[-3000:]}")
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            time.sleep(0.05)
        raise RuntimeError(f"{self.hostname}: no API URL after {timeout}s\n{self.log()[-3000:]}")

    def token(self) -> str:
        return (self.root / "state/admin-token").read_text().strip()

    def call(self, method: str, path: str, *, admin: bool = False,
             timeout: float = 600) -> tuple[int, Any]:
        req = urllib.request.Request(self.api() + path, method=method)
        if admin:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def reconcile(self, timeout: float = 600) -> dict[str, Any]:
        """POST /v1/reconcile?wait=1 with the admin token: one pass, waited for."""
        status, body = self.call("POST", "/v1/reconcile?wait=1", admin=True, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"{self.hostname}: POST /v1/reconcile: {status} {body!r}")
        return dict(body)

    def images(self) -> list[dict[str, Any]]:
        status, body = self.call("GET", "/v1/images")
        if status != 200:
            raise RuntimeError(f"{self.hostname}: GET /v1/images: {status}")
        return list(body["images"])

    def exported(self) -> int:
        return sum(1 for i in self.images() if i.get("state") == "exported")

    def debug_state(self) -> dict[str, Any]:
        status, body = self.call("GET", "/debug/state", admin=True)
        if status != 200:
            raise RuntimeError(f"{self.hostname}: GET /debug/state: {status}")
        return dict(body)


@dataclass(frozen=True)
class Image:
    """One small real image in S3 and its record id in IMS."""

    ims_id: str
    name: str
    desired: DesiredImage
    manifest_url: str
    manifest_etag: str


class Env:
    """moto + counting proxy + dev IMS + workers, all in one scratch directory."""

    def __init__(self, prefix: str = "sbps-bench-") -> None:
        self.work = Path(tempfile.mkdtemp(prefix=prefix))
        self._stack = ExitStack()
        self.workers: list[BenchWorker] = []
        self.ims: IMSServer | None = None
        self.proxy: CountingProxy | None = None
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        port = free_port()
        self._moto_log = open(self.work / "moto.log", "wb")  # noqa: SIM115 (closed in close())
        self.moto = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=self._moto_log, stderr=subprocess.STDOUT)
        try:
            wait_port(port, self.moto, "moto_server")
            self.s3server = S3Server(f"http://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY)
            self.s3client = self.s3server.client()
            self.s3client.create_bucket(Bucket=BUCKET)
            self.credentials = self.work / "ims.s3fs"
            self.credentials.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
            self.credentials.chmod(0o600)
            cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": self.s3server.endpoint}).config
            self.s3 = S3(cfg.s3, Credentials(ACCESS_KEY, SECRET_KEY))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Env:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_proxy(self) -> CountingProxy:
        self.proxy = CountingProxy(self.s3server.endpoint)
        return self.proxy

    def start_ims(self, records: list[dict[str, Any]]) -> IMSServer:
        load_file = self.work / "ims-records.json"
        load_file.write_text(json.dumps(records))
        (self.work / "ims").mkdir(exist_ok=True)
        self.ims = start_ims_server(self.work / "ims", load=[load_file])
        return self.ims

    # --- images ----------------------------------------------------------------------

    def upload_images(self, count: int, size_kib: int = 8) -> list[Image]:
        """``count`` distinct real squashfs images of about ``size_kib`` KiB: one mksquashfs
        image with a unique tail block each (squashfs ignores bytes past its end), uploaded
        the way IMS lays them out (sbps.imagebuild.upload), manifest last."""
        tree = self.work / "image-tree"
        (tree / "etc").mkdir(parents=True, exist_ok=True)
        (tree / "etc/os-release").write_text("NAME=sbps-bench\n")
        (tree / "etc/pad").write_bytes(os.urandom(max(0, size_kib - 8) * 1024))
        base = make_squashfs(tree, self.work / "base.squashfs").read_bytes()
        out = []
        variant = self.work / "variant.squashfs"
        for n in range(count):
            ims_id = str(uuid.UUID(int=(0xBE4C << 112) | n, version=4))
            variant.write_bytes(base + os.urandom(4096))
            up = upload_image(self.s3, BUCKET, ims_id, variant)
            r = up.rootfs
            desired = DesiredImage(identity.rootfs(r.url, r.etag), ImageKind.ROOTFS,
                                   ObjectInfo(r.url, r.etag, r.size), f"bench-{n:04d}", ims_id)
            out.append(Image(ims_id, f"bench-{n:04d}", desired, str(up.manifest_url),
                             up.manifest_etag))
        variant.unlink()
        return out

    def stage(self, images: list[Image], cache: Path) -> None:
        """Stage the images into ``cache`` with the stager's own verified download."""
        async def run() -> None:
            stager = Stager(dataclasses.replace(StageConfig(), cache_dir=str(cache),
                                                rehash_on_start=False), self.s3)
            try:
                for img in images:
                    await stager.stage(img.desired)
            finally:
                await stager.aclose()
        asyncio.run(run())

    @staticmethod
    def link_cache(master: Path, cache: Path) -> int:
        """Seed ``cache`` from ``master`` by hard links (same inode, so the verification
        records still match); returns the number of files linked."""
        cache.mkdir(parents=True, exist_ok=True)
        n = 0
        for f in master.iterdir():
            if f.is_file() and not f.name.startswith("."):
                os.link(f, cache / f.name)
                n += 1
        return n

    @staticmethod
    def records(images: list[Image], labelled: int, total: int) -> list[dict[str, Any]]:
        """IMS records: the images (the first ``labelled`` of them labelled), then plain
        records up to ``total`` whose manifests are never read (they are not labelled)."""
        out = []
        for n, img in enumerate(images):
            out.append({"id": img.ims_id, "name": img.name, "arch": "x86_64",
                        "created": "2026-01-01T00:00:00+00:00",
                        "link": {"path": img.manifest_url, "etag": img.manifest_etag,
                                 "type": "s3"},
                        "metadata": {PROJECT_LABEL: "true"} if n < labelled else {}})
        for n in range(len(images), total):
            ims_id = str(uuid.UUID(int=(0xF1E1D << 100) | n, version=4))
            out.append({"id": ims_id, "name": f"other-{n:04d}", "arch": "x86_64",
                        "created": "2026-01-01T00:00:00+00:00",
                        "link": {"path": f"s3://{BUCKET}/{ims_id}/manifest.json",
                                 "etag": f"{n:032x}", "type": "s3"},
                        "metadata": {"owner": "someone-else"}})
        return out

    # --- workers ---------------------------------------------------------------------

    def worker(self, hostname: str, *, s3_endpoint: str | None = None,
               cache_from: Path | None = None, **overrides: dict[str, Any]) -> BenchWorker:
        """A marshal (not started) with its own emulation mount, state and cache."""
        assert self.ims is not None, "start_ims() first"
        root = self.work / hostname
        (root / "state").mkdir(parents=True)
        cache = root / "cache"
        if cache_from is not None:
            self.link_cache(cache_from, cache)
        else:
            cache.mkdir()
        emulation = self._stack.enter_context(mounted())
        settings: dict[str, dict[str, Any]] = {
            "node": {"hostname": hostname, "system_name": "sys", "site_domain": "example.test"},
            "catalog": {"api_gateway": self.ims.url, "ims_uri": "v3/images", "timeout": 30},
            "s3": {"endpoint": s3_endpoint or self.s3server.endpoint, "bucket": BUCKET,
                   "credential_file": str(self.credentials), "timeout": 30},
            "stage": {"cache_dir": str(cache)},
            "target": {"backend": "lio", "configfs_root": f"{emulation.root}/target",
                       "saveconfig_path": str(root / "saveconfig.json"),
                       "portals": ["127.0.0.1:3260"]},
            "reconcile": {"interval": "1h", "state_dir": str(root / "state"),
                          "retire_grace": "0s"},
            "http": {"port": 0},
            "log": {"level": "info", "format": "json"},
        }
        for section, body in overrides.items():
            settings.setdefault(section, {}).update(body)
        w = BenchWorker(hostname, root, emulation, settings)
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.stop()
        self._stack.close()
        if self.proxy is not None:
            self.proxy.close()
        if self.ims is not None:
            stop_process(self.ims.proc)
            if self.ims.proc.stdout is not None:
                self.ims.proc.stdout.close()
        stop_process(self.moto)
        self._moto_log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def wait_for(what: str, check: Any, timeout: float = 300, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def lun_files(w: Worker) -> set[str]:
    """The backing files of the worker's LUNs, straight from its configfs emulation (cheap:
    only the LUN directories and their links are read)."""
    tpg = Path(w.emulation.root) / "target/iscsi" / w.iqn / "tpgt_1/lun"
    out = set()
    try:
        luns = list(tpg.iterdir())
    except FileNotFoundError:
        return out
    for lun in luns:
        try:
            links = [p for p in lun.iterdir() if p.is_symlink()]
        except FileNotFoundError:
            continue  # removed while we looked: a retiring LUN
        out.update(p.resolve().name for p in links)
    return out
