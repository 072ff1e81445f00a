"""Fixtures of the boot lane: the node image, and a fleet of tgt workers registered in DNS.

``node_image`` builds (or reuses) the kernel and the initramfs made from
contrib/dracut/90sbps. ``fleet(n)`` starts ``n`` marshals with the tgt backend, each with
its own tgtd on loopback, registering SRV and A records (the A records name 10.0.2.2, the
host as the node sees it; the SRV port is the worker's tgtd port) in one Knot; and
``publish()`` builds the demo root with ``sbpsctl image build`` and waits until every
worker exports it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sbps.dev.demo import build_rootfs
from tests.boot.build import NodeImage, ensure_node
from tests.boot.node import HOST
from tests.fixtures.dns import DOMAIN, SYSTEM, KnotServer
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer
from tests.fixtures.tgt import Tgtd, start_tgtd, stop_tgtd

HOST_TOOLS = ("qemu-system-x86_64", "cpio", "apt-get", "dpkg-deb", "busybox", "tgtd",
              "knotd", "mksquashfs")


@pytest.fixture(scope="session")
def node_image() -> NodeImage:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)} (scripts/install-deps)")
    if os.geteuid() != 0:
        pytest.skip("the boot lane runs tgtd as root")
    return ensure_node()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def exported(url: str, ims_id: str) -> bool:
    try:
        images = get_json(f"{url}/v1/images/{ims_id}")["images"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False  # not in the catalog yet
        raise
    return any(e["state"] == "exported" for e in images)


@dataclass
class Fleet:
    workers: list[Worker]
    tgtds: list[tuple[subprocess.Popen[Any], Tgtd]]
    tree: Path
    node: NodeImage
    knot: KnotServer
    ims_id: str = ""
    published: dict[str, Any] = field(default_factory=dict)

    def url(self, i: int = 0) -> str:
        w = self.workers[i]
        return wait_until("the API URL", lambda: (w.root / "state/http-url").exists()
                          and (w.root / "state/http-url").read_text().strip(), worker=w)

    def publish(self, name: str = "boot-lane") -> dict[str, Any]:
        """``sbpsctl image build`` the demo root; wait until every worker exports it;
        returns ``{"cmdline", "wwid", "image"}`` as the first worker's API gives them."""
        boot_params = f"console=ttyS0 panic=-1 rd.sbps.dns={HOST}:{self.knot.port}"
        done = subprocess.run(
            [sys.executable, "-c", "from sbps.cli import run; run()", "--config",
             str(self.workers[0].config_path), "image", "build", str(self.tree), "--name",
             name, "--kernel", str(self.node.kernel), "--initrd", str(self.node.initrd),
             "--boot-params", boot_params, "--json"],
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        self.ims_id = json.loads(done.stdout)["image_id"]
        for i, w in enumerate(self.workers):
            url = self.url(i)
            wait_until(f"{w.hostname} to export the image",
                       lambda u=url: exported(u, self.ims_id), worker=w, timeout=120)
        url = self.url(0)
        entry = next(e for e in get_json(f"{url}/v1/images/{self.ims_id}")["images"]
                     if e["state"] == "exported")
        doc = get_json(f"{url}/v1/bootparams/{self.ims_id}")
        self.published = {"cmdline": doc["cmdline"], "wwid": entry["wwid"], "image": entry,
                          "bootparams": doc}
        return self.published


@pytest.fixture
def fleet(node_image: NodeImage, make_worker: Callable[..., Worker], ims_server: IMSServer,
          knot_server: KnotServer, tmp_path: Path) -> Iterator[Callable[[int], Fleet]]:
    made: list[Fleet] = []

    def make(n: int) -> Fleet:
        tree = tmp_path / "tree"
        build_rootfs(tree)
        tgtds = [start_tgtd(tmp_path / f"tgtd{i}.log") for i in range(n)]
        workers = []
        for i, (_, tgtd) in enumerate(tgtds):
            w = make_worker(
                f"ncn-w00{i + 1}", ims_server, backend="tgt", tgtd=tgtd,
                node={"system_name": SYSTEM, "site_domain": DOMAIN},
                target={"port": tgtd.port},
                dns={"mode": "rfc2136", "server": "127.0.0.1", "port": knot_server.port,
                     "tsig_key_file": str(knot_server.key_file), "ttl": 60,
                     "hsn_address": HOST, "nmn_address": HOST,
                     # The node reaches the portal on 127.0.0.1 as 10.0.2.2 (qemu's
                     # user-mode NAT): no portal listens on the A address itself.
                     "require_portal": False})
            w.write_config()
            workers.append(w)
        fleet = Fleet(workers, tgtds, tree, node_image, knot_server)
        made.append(fleet)
        for w in workers:
            w.start()
        return fleet

    yield make
    for fleet in made:
        for w in fleet.workers:
            w.stop()
        for proc, tgtd in fleet.tgtds:
            if proc.poll() is None:
                stop_tgtd(proc, tgtd.control_port)
