"""Benchmark (not a test): per-image export cost through the LIO backend vs the field agent.

Both methods run on the configfs emulation. For each size N, the tree first holds N - K
exported images, then the last K images are exported and timed (the marginal cost at size
N; both methods get slower as the tree grows):

- field agent: three ``targetcli`` processes per image (``backstores/fileio create``,
  ``luns create``, ``saveconfig``), run in a private mount namespace as the tests do; the
  N - K images are put in place by one ``targetcli restoreconfig`` (not timed);
- backend: ``apply(CreateStorageObject)`` + ``apply(CreateLun)`` per image, then one
  ``commit()`` per batch as the reconciler does; also shown with a commit after every image.

Run as root: ``python perf/bench_lio.py [--sizes 50,100,200] [--sample 10]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configfs import mounted  # noqa: E402
from sbps.core.actions import CreateLun, CreateStorageObject, CreateTarget  # noqa: E402
from sbps.core.target_state import Lun, StorageObject  # noqa: E402
from tests.fixtures import targetcli as lio_targetcli  # noqa: E402
from tests.integration import lio_scenarios as sc  # noqa: E402


def actions(env: sc.Env, n: int) -> tuple[CreateStorageObject, CreateLun]:
    img = sc.image(n)
    ident = img.identity
    path = sc.stage(env, [img])[ident.digest]
    so = StorageObject(name=ident.name, path=path, size=sc.SIZE, serial=ident.serial,
                       product_id=ident.product_id)
    return (CreateStorageObject(so, reason="bench", subject=ident.name),
            CreateLun(Lun(n, ident.name), reason="bench", subject=ident.name))


def backend_cost(workdir: str, size: int, sample: int) -> dict[str, float]:
    """``pass``: N images applied and committed once, as one reconcile pass does, per image;
    ``commit_each``: ``sample`` more images with a commit after each (marginal, at size N)."""
    with mounted() as m:
        env = sc.Env(m.root, m.control_path, workdir)
        backend = env.backend()
        backend.apply(CreateTarget(sc.IQN, reason="bench"))
        batch = [a for n in range(1, size + 1) for a in actions(env, n)]
        started = time.perf_counter()
        for a in batch:
            backend.apply(a)
        backend.commit()
        per_pass = (time.perf_counter() - started) / size
        extra = [actions(env, n) for n in range(size + 1, size + sample + 1)]
        started = time.perf_counter()
        for pair in extra:
            for a in pair:
                backend.apply(a)
            backend.commit()
        each = (time.perf_counter() - started) / sample
        assert len(backend.read().luns) == size + sample
    return {"pass": per_pass, "commit_each": each}


def field_agent_cost(workdir: str, size: int, sample: int) -> float:
    env = sc.Env("", "", workdir)
    # The first size - sample images, saved by the backend, are restored by one process.
    with mounted() as m:
        pre = sc.Env(m.root, m.control_path, workdir)
        backend = pre.backend()
        backend.apply(CreateTarget(sc.IQN, reason="bench"))
        for n in range(1, size - sample + 1):
            for a in actions(pre, n):
                backend.apply(a)
        backend.commit()
    steps = [["restoreconfig", f"savefile={env.saveconfig}"]]
    save = os.path.join(workdir, "agent-saveconfig.json")
    for n in range(size - sample + 1, size + 1):
        so, lun = actions(env, n)
        steps += [["/backstores/fileio", "create", f"name={so.storage.name}",
                   f"file_or_dev={so.storage.path}", f"size={sc.SIZE}", "write_back=false"],
                  [f"/iscsi/{sc.IQN}/tpg1/luns", "create",
                   f"/backstores/fileio/{so.storage.name}", f"lun={n}"],
                  ["saveconfig", f"savefile={save}"]]
    report = lio_targetcli.run(workdir, steps)
    timed = report["steps"][1:]
    failed = [s for s in timed if s["rc"] != 0]
    assert not failed, failed[0]
    return sum(float(s["seconds"]) for s in timed) / sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--sample", type=int, default=10)
    args = parser.parse_args()
    print(f"{'images':>6} {'agent s/img':>12} {'sbps pass s/img':>16} {'ratio':>7} "
          f"{'sbps commit-each s/img':>23} {'ratio':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            lio = backend_cost(a, size, args.sample)
            agent = field_agent_cost(b, size, args.sample)
        print(f"{size:>6} {agent:>12.3f} {lio['pass']:>16.4f} {agent / lio['pass']:>6.0f}x "
              f"{lio['commit_each']:>23.4f} {agent / lio['commit_each']:>6.1f}x", flush=True)
    print(f"\nagent: 3 targetcli processes per image, timed over images {{N-{args.sample}+1..N}} "
          f"(the first N-{args.sample} restored untimed) and taken as the per-image cost at N. "
          "sbps pass: N images applied through the backend and committed once (one reconcile "
          f"pass), total / N. sbps commit-each: {args.sample} more images with a commit "
          "(saveconfig.json) after every one.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
