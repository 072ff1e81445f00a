"""The LIO backend's per-pass configfs work at N LUNs, measured where it runs: on the configfs
emulation (the host) and on a real kernel's configfs (the realkernel guest). A script, run by
bench_readpath.py with whatever python3 has rtslib-fb and sbps on its path; prints one JSON
object. Not a test: it builds N fileio backstores and LUNs with plain configfs writes, measures,
and removes them again with rtslib.

    python3 perf/_lio_pass.py CONFIGFS_TARGET_ROOT WORKDIR N

CPU time is this thread's (``time.thread_time``), the best of three runs of each operation,
so the figures compare the work, not the machine's load. Baselines (the same tree, the same
process): what rtslib's own objects cost for the same job, the way the field agent's
targetcli read and saved: a walk over every storage object and LUN, and ``RTSRoot().dump()``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IQN = "iqn.2023-06.csm.iscsi:ncn-w001"
SIZE = 1 << 20


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def build(target: str, cache: str, n: int) -> None:
    """N exported images as sbps leaves them (serial and product id derived from the name)."""
    os.makedirs(os.path.join(target, "iscsi", IQN, "tpgt_1"), exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    for i in range(n):
        name = f"{i:015x}"
        backing = os.path.join(cache, f"{name}.sqfs")
        with open(backing, "wb") as f:
            f.truncate(SIZE)
        os.chmod(backing, 0o444)
        so = os.path.join(target, "core", f"fileio_{i}", name)
        os.makedirs(so)
        _write(f"{so}/control", f"fd_dev_name={backing},fd_dev_size={SIZE}")
        _write(f"{so}/udev_path", backing)
        _write(f"{so}/enable", "1")
        _write(f"{so}/wwn/vpd_unit_serial", f"{name}00000000")
        _write(f"{so}/attrib/emulate_model_alias", "1")
        if os.path.exists(f"{so}/wwn/product_id"):
            _write(f"{so}/wwn/product_id", name)
        lun = os.path.join(target, "iscsi", IQN, "tpgt_1", "lun", f"lun_{i + 1}")
        os.makedirs(lun)
        os.symlink(so, os.path.join(lun, name))


def best_ms(fn: Callable[[], Any], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return round(best * 1000, 2)


def measure(target: str, workdir: str, n: int) -> dict[str, Any]:
    from rtslib_fb import RTSRoot

    from sbps.config import TargetConfig
    from sbps.core.actions import DeleteLun
    from sbps.target.lio.backend import LioBackend

    cache = os.path.join(workdir, "cache")
    build(target, cache, n)

    def backend(verify: float) -> LioBackend:
        cfg = TargetConfig(configfs_root=target, verify_interval=verify,
                           saveconfig_path=os.path.join(workdir, "saveconfig.json"))
        b = LioBackend(cfg, cache, IQN)
        b.open()
        return b

    full, steady = backend(0.0), backend(3600.0)
    state = steady.read()
    assert len(state.luns) == n and not state.foreign, (len(state.luns), state.foreign)
    assert full.read() == state
    indexes = [lun.index for lun in state.luns]
    out: dict[str, Any] = {"luns": n}
    out["full read"] = best_ms(full.read)
    out["steady read"] = best_ms(steady.read)
    out["counters of every LUN"] = best_ms(lambda: steady.stats(indexes))
    out["sessions"] = best_ms(steady.sessions)

    def rtslib_walk() -> list[Any]:
        root = RTSRoot()
        seen: list[Any] = [(so.name, so.udev_path, so.size, so.wwn, so.write_back)
                           for so in root.storage_objects]
        return seen + [(lun.lun, lun.storage_object.name) for lun in root.luns]

    out["rtslib walk"] = best_ms(rtslib_walk)
    out["first save"] = best_ms(steady.commit, runs=1)

    def change_and_save() -> None:
        steady.apply(DeleteLun(indexes.pop(), reason="benchmark"))
        steady.commit()

    out["save after one change"] = best_ms(change_and_save)
    out["rtslib dump"] = best_ms(lambda: RTSRoot().dump(), runs=1)
    RTSRoot().clear_existing(confirm=True)
    return out


def main(argv: list[str]) -> int:
    target, workdir, n = argv[0], argv[1], int(argv[2])
    print(json.dumps(measure(target, workdir, n), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
