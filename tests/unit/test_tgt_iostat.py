"""The tgt I/O-thread map on a /proc tree laid out as the kernel does (a directory here)."""

from __future__ import annotations

import os
from pathlib import Path

from sbps.target.tgt.iostat import IoThreads


def _proc(tmp_path: Path, pid: int, start: int, tasks: dict[int, int]) -> tuple[Path, str]:
    proc = tmp_path / "proc"
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    lock = run / "socket.7.lock"
    lock.touch()
    st = lock.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    proc.mkdir(exist_ok=True)
    (proc / "locks").write_text(f"1: FLOCK  ADVISORY  WRITE 99 00:00:1 0 EOF\n"
                                f"2: POSIX  ADVISORY  WRITE {pid} {dev} 0 0\n")
    (proc / str(pid)).mkdir(exist_ok=True)
    fields = " ".join(["S"] + ["0"] * 18 + [str(start)] + ["0"] * 5)
    (proc / str(pid) / "stat").write_text(f"{pid} (tgtd) {fields}\n")
    task = proc / str(pid) / "task"
    task.mkdir(exist_ok=True)
    for tid, rchar in tasks.items():
        (task / str(tid)).mkdir(exist_ok=True)
        (task / str(tid) / "io").write_text(f"rchar: {rchar}\nwchar: 0\n")
    return proc, str(run / "socket")


def test_threads_of_a_new_lun_are_counted_and_kept_across_a_restart(tmp_path: Path) -> None:
    proc, prefix = _proc(tmp_path, 40, 1000, {40: 5})
    state = tmp_path / "map.json"
    io = IoThreads(7, state, proc=proc, socket_prefix=prefix)
    with io.creating(3):
        _proc(tmp_path, 40, 1000, {41: 100, 42: 20})
    assert io.read_bytes() == {3: 120}
    again = IoThreads(7, state, proc=proc, socket_prefix=prefix)  # the marshal restarted
    assert again.read_bytes() == {3: 120}
    # Another tgtd (a restart: other start time): the map is not its map.
    _proc(tmp_path, 40, 2000, {})
    assert IoThreads(7, state, proc=proc, socket_prefix=prefix).read_bytes() == {}


def test_a_lun_with_a_missing_thread_is_left_to_the_session_counters(tmp_path: Path) -> None:
    proc, prefix = _proc(tmp_path, 40, 1000, {40: 5})
    io = IoThreads(7, None, proc=proc, socket_prefix=prefix)
    with io.creating(3):
        _proc(tmp_path, 40, 1000, {41: 100, 42: 20})
    (proc / "40" / "task" / "42" / "io").unlink()
    (proc / "40" / "task" / "42").rmdir()
    assert io.read_bytes() == {}


def test_a_corrupt_map_is_ignored(tmp_path: Path) -> None:
    proc, prefix = _proc(tmp_path, 40, 1000, {40: 5})
    state = tmp_path / "map.json"
    state.write_text("[" * 100_000)
    assert IoThreads(7, state, proc=proc, socket_prefix=prefix).read_bytes() == {}


def test_no_tgtd_no_counts(tmp_path: Path) -> None:
    io = IoThreads(7, None, proc=tmp_path, socket_prefix=str(tmp_path / "nothing"))
    with io.creating(1):
        pass
    assert io.read_bytes() == {} and io.tgtd() is None
