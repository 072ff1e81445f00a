"""A running marshal keeps node-exporter's textfile of the field's iscsi_* metrics current,
with the labels the site's dashboard selects, and leaves it on stop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sbps.publish.metrics import COMPAT_NAMES
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer


def samples(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    if not path.exists():
        return {}
    return {f.name: [(s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(path.read_text())}


def test_daemon_writes_the_textfile(make_worker: Callable[..., Worker], ims_server: IMSServer,
                                    upload_ims_image: Callable[..., Any],
                                    tmp_path: Path) -> None:
    upload_ims_image("compute", label=True)
    directory = tmp_path / "node_exporter"
    directory.mkdir()
    path = directory / "sbps_iscsi.prom"
    w = make_worker("ncn-w001", ims_server,
                    http={"port": 0, "textfile_path": str(path), "textfile_interval": "1s"})
    w.start()
    got = wait_until("the textfile to count the exported LUN and read its counters",
                     lambda: (s := samples(path)) and s.get("iscsi_rootfs_lun_cnt") ==
                     [({}, 1.0)] and s.get("iscsi_read_mbytes") and s, worker=w)
    assert set(got) == set(COMPAT_NAMES)
    (labels, _), = got["iscsi_read_mbytes"]
    assert set(labels) == {"lun", "key", "ims_id"} and labels["lun"].startswith("lun_")
    lun = labels["lun"]
    w.emulation.control.read(f"target/iscsi/{w.iqn}/tpgt_1/lun/{lun}", 3 << 20)

    def read_mbytes() -> bool:
        mbytes = samples(path).get("iscsi_read_mbytes", [])
        return any(lb["lun"] == lun and v >= 3.0 for lb, v in mbytes)

    wait_until("the textfile to show the reads", read_mbytes, worker=w)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in directory.iterdir()) == ["sbps_iscsi.prom"]
    assert w.stop() == 0
    assert path.exists()  # kept on stop, as the field's file was
