"""The whole marshal as a subprocess: real moto S3, the dev IMS server, LIO via rtslib on the
configfs emulation. The target is read straight from configfs, never through the daemon."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sbps.core import identity
from tests.fixtures.images import PROJECT_LABEL
from tests.fixtures.marshal import Worker, wait_until
from tests.fixtures.servers import IMSServer


def expected_serial(up: object) -> str:
    return identity.rootfs(up.rootfs_url, up.rootfs_etag).serial  # type: ignore[attr-defined]


def lun_of(worker: Worker, serial: str) -> int | None:
    return next((n for n, lun in worker.luns().items() if lun["serial"] == serial), None)


@contextmanager
def reading(worker: Worker, lun: int, every: float = 0.3) -> Iterator[None]:
    """Simulated client reads on one LUN through the emulation's side channel."""
    stop = threading.Event()
    path = f"target/iscsi/{worker.iqn}/tpgt_1/lun/lun_{lun}"

    def loop() -> None:
        while not stop.wait(every):
            worker.emulation.control.read(path, 1 << 20)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def test_once_exports_a_labelled_image(make_worker: Callable[..., Worker], ims_server: IMSServer,
                                       upload_ims_image: Callable[..., object]) -> None:
    up = upload_ims_image("compute", label=True)
    upload_ims_image("unlabelled", label=False)
    w = make_worker("ncn-w001", ims_server)
    result = w.once()
    assert result.returncode == 0, result.stderr[-4000:]
    luns = w.luns()
    assert [lun["serial"] for lun in luns.values()] == [expected_serial(up)]
    (lun,) = luns.values()
    assert lun["file"].startswith(str(w.root / "cache"))
    assert w.tpg_enabled()
    # A second run over the converged target changes nothing.
    w.emulation.control.reset_counters()
    again = w.once()
    assert again.returncode == 0, again.stderr[-4000:]
    assert w.emulation.control.writes() == 0
    assert w.luns() == luns


def test_label_unlabel_waits_for_reads_to_stop(make_worker: Callable[..., Worker],
                                              ims_server: IMSServer,
                                              upload_ims_image: Callable[..., object]) -> None:
    up = upload_ims_image("compute", label=False)
    w = make_worker("ncn-w001", ims_server, reconcile={"retire_grace": "2s"})
    w.start()
    serial = expected_serial(up)
    ims_server.set_label(up.ims_id, PROJECT_LABEL)  # type: ignore[attr-defined]
    lun = wait_until("the image to be exported", lambda: lun_of(w, serial), worker=w)
    with reading(w, lun):
        ims_server.remove_label(up.ims_id, PROJECT_LABEL)  # type: ignore[attr-defined]
        # Reads continue well past the grace: the LUN must stay.
        threading.Event().wait(6)
        assert lun_of(w, serial) == lun, w.log()[-3000:]
    wait_until("the idle LUN to be retired", lambda: lun_of(w, serial) is None, worker=w)
    assert w.stop() == 0


def test_ims_outage_and_empty_catalog_remove_nothing(make_worker: Callable[..., Worker],
                                                    ims_server: IMSServer,
                                                    upload_ims_image: Callable[..., object]
                                                    ) -> None:
    up = upload_ims_image("compute", label=True)
    w = make_worker("ncn-w001", ims_server,
                    reconcile={"retire_grace": "0s", "empty_catalog_passes": 1000})
    w.start()
    serial = expected_serial(up)
    lun = wait_until("the image to be exported", lambda: lun_of(w, serial), worker=w)
    ims_server.faults(status=500, count=30)
    threading.Event().wait(5)
    assert lun_of(w, serial) == lun
    ims_server.clear_faults()
    ims_server.delete(up.ims_id)  # type: ignore[attr-defined]
    threading.Event().wait(4)
    assert lun_of(w, serial) == lun, "an empty catalog is an outage below the threshold"
    assert w.stop() == 0


def test_restart_after_sigkill_makes_no_writes(make_worker: Callable[..., Worker],
                                               ims_server: IMSServer,
                                               upload_ims_image: Callable[..., object]) -> None:
    ups = [upload_ims_image(f"img{i}", label=True) for i in range(3)]
    w = make_worker("ncn-w001", ims_server)
    w.start()
    serials = {expected_serial(u) for u in ups}
    wait_until("three exports", lambda: {x["serial"] for x in w.luns().values()} == serials,
               worker=w)
    before = w.luns()
    w.kill()
    w.emulation.control.reset_counters()
    w.start()
    start = len(w.log())
    wait_until("two passes after restart", lambda: "pass 2 finished" in w.log()[start:],
               worker=w, timeout=60)
    assert w.emulation.control.writes() == 0
    assert w.luns() == before
    assert w.stop() == 0


def test_two_workers_agree_whatever_the_order(make_worker: Callable[..., Worker],
                                              ims_server: IMSServer,
                                              upload_ims_image: Callable[..., object]) -> None:
    ups = [upload_ims_image(f"img{i}", label=False) for i in range(4)]
    a = make_worker("ncn-w001", ims_server)
    b = make_worker("ncn-w002", ims_server)
    for up in ups[:2]:
        ims_server.set_label(up.ims_id, PROJECT_LABEL)  # type: ignore[attr-defined]
    assert a.once().returncode == 0
    for up in ups[2:]:
        ims_server.set_label(up.ims_id, PROJECT_LABEL)  # type: ignore[attr-defined]
    assert b.once().returncode == 0
    assert a.once().returncode == 0

    def table(w: Worker) -> dict[int, tuple[str, str]]:
        return {n: (x["serial"], x["info"].split("File Size:")[-1].split()[0])
                for n, x in w.luns().items()}

    assert len(table(a)) == 4
    assert table(a) == table(b)
