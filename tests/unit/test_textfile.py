"""The node-exporter textfile of the field's iscsi_* metrics: content, atomic replacement,
one writer per name, and the writer's own state."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from sbps.publish import textfile
from sbps.publish.metrics import COMPAT_NAMES, SbpsCollector
from sbps.publish.textfile import STALE, State, TextfileWriter, write_atomically
from tests.fixtures.http_api import make_status, pe, rootfs

FIELD_LABELS = {"lun", "key", "ims_id"}


ROOTFS, PE = rootfs("ims-1"), pe("cpe")


def collector_with_two_luns() -> SbpsCollector:
    status = make_status([(ROOTFS, 3), (PE, 7)], read_bytes=5 << 20, commands=10)
    return SbpsCollector(lambda: status, version="t")


def parse(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        out[fam.name] = [(s.labels, s.value) for s in fam.samples]
    return out


def test_file_has_the_field_names_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "sbps_iscsi.prom"
    w = TextfileWriter(str(path), 30, collector_with_two_luns().compat)
    assert w.write_once().state is State.WRITTEN
    got = parse(path.read_bytes())
    assert set(got) == set(COMPAT_NAMES)
    mbytes = got["iscsi_read_mbytes"]
    assert {frozenset(labels) for labels, _ in mbytes} == {frozenset(FIELD_LABELS)}
    # The site's dashboard selects lun=~"lun.*": configfs names, not bare numbers.
    assert sorted(labels["lun"] for labels, _ in mbytes) == ["lun_3", "lun_7"]
    assert {labels["lun"]: v for labels, v in mbytes}["lun_3"] == 5.0
    assert {labels["lun"]: labels["ims_id"] for labels, _ in mbytes} == \
        {"lun_3": "ims-1", "lun_7": ""}
    assert got["iscsi_rootfs_lun_cnt"] == [({}, 1.0)]
    assert got["iscsi_pe_lun_cnt"] == [({}, 1.0)]
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["sbps_iscsi.prom"]  # no temporary left


def test_http_metrics_keep_their_lun_labels() -> None:
    text = textfile.render(list(collector_with_two_luns().collect())).decode()
    assert f'iscsi_read_mbytes{{ims_id="ims-1",key="{ROOTFS.identity.name}",lun="3"}}' \
        in text


def _bodies(n: int) -> list[bytes]:
    return [textfile.render([GaugeMetricFamily("iscsi_pe_lun_cnt", "PE LUNs.", value=i)])
            + b"# padding " + b"x" * (4096 * (i % 7)) + b"\n" for i in range(n)]


def test_readers_see_the_old_file_until_the_new_one_is_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the path at the moment the new content has been written and synced, before
    the rename: a reader still sees the whole previous file."""
    path = tmp_path / "sbps_iscsi.prom"
    old, new = _bodies(2)
    write_atomically(str(path), old)
    seen: list[bytes] = []
    real_fsync = os.fsync

    def fsync_then_read(fd: int) -> None:
        real_fsync(fd)
        seen.append(path.read_bytes())

    monkeypatch.setattr(os, "fsync", fsync_then_read)
    write_atomically(str(path), new)
    assert seen == [old] and path.read_bytes() == new

    # Negative control: writing in place shows a reader the new file before it is whole.
    def in_place(target: Path, body: bytes) -> None:
        with open(target, "wb") as fh:
            fh.write(body[:10])
            fh.flush()
            os.fsync(fh.fileno())
            fh.write(body[10:])

    seen.clear()
    in_place(path, old)
    assert seen and seen != [new] and seen[0] == old[:10]


def test_a_concurrent_reader_only_ever_reads_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "sbps_iscsi.prom"
    bodies = _bodies(40)
    write_atomically(str(path), bodies[0])
    whole, stop, bad = set(bodies), threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            body = path.read_bytes()
            if body not in whole:
                bad.append(body)
            parse(body)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for body in bodies * 5:
            write_atomically(str(path), body)
    finally:
        stop.set()
        t.join()
    assert not bad


def _foreign(directory: Path, name: str, text: str, age: float = 0.0) -> Path:
    other = directory / name
    other.write_text(text)
    if age:
        then = time.time() - age
        os.utime(other, (then, then))
    return other


def families() -> list[Metric]:
    return [GaugeMetricFamily("iscsi_pe_lun_cnt", "PE LUNs.", value=1)]


def test_yields_to_another_writer_of_the_names_and_removes_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sbps_iscsi.prom"
    w = TextfileWriter(str(path), 30, families)
    assert w.write_once().state is State.WRITTEN and path.exists()
    _foreign(tmp_path, "node.prom", "node_thing 1\n")  # other names: no conflict
    _foreign(tmp_path, ".iscsi.prom.tmp", "iscsi_read_rate 1\n")  # not *.prom
    assert w.write_once().state is State.WRITTEN
    other = _foreign(tmp_path, "iscsi.prom", '# TYPE iscsi_read_rate gauge\n'
                     'iscsi_read_rate{lun="lun_0"} 2\n')
    outcome = w.write_once()
    assert outcome.state is State.YIELDED and outcome.other == str(other)
    assert not path.exists() and other.exists()
    _foreign(tmp_path, "iscsi.prom", "iscsi_read_rate 2\n", age=STALE + 60)
    assert w.write_once().state is State.BLOCKED
    other.unlink()
    assert w.write_once().state is State.WRITTEN and path.exists()


def test_missing_directory_failure_and_off(tmp_path: Path) -> None:
    assert TextfileWriter(str(tmp_path / "none" / "x.prom"), 30, families).write_once() \
        .state is State.NO_DIRECTORY
    taken = tmp_path / "taken.prom"
    taken.mkdir()  # the path is a directory: the rename fails, whoever runs the test
    w = TextfileWriter(str(taken), 30, families)
    outcome = w.write_once()
    assert outcome.state is State.FAILED and outcome.error
    assert [p.name for p in tmp_path.iterdir()] == ["taken.prom"]  # no temporary left
    off = TextfileWriter("", 30, families)
    assert off.last.state is State.OFF


def _state(w: TextfileWriter) -> Iterator[tuple[str, float]]:
    for fam in w.collect():
        for s in fam.samples:
            if s.name == "sbps_textfile_state" and s.value:
                yield s.labels["state"], s.value


def test_state_metric(tmp_path: Path) -> None:
    w = TextfileWriter(str(tmp_path / "x.prom"), 30, families)
    assert list(_state(w)) == [("pending", 1.0)]
    w.write_once()
    assert list(_state(w)) == [("written", 1.0)]
