"""LIO backend scenarios on a mounted configfs emulation, for either rtslib.

Owns the scenario bodies (plain asserts, no pytest) so that the same code runs in-process
with PyPI rtslib-fb 2.2.4 and, as ``/usr/bin/python3 lio_scenarios.py NAME ARGS-JSON``, with
Debian's rtslib-fb 2.1.75. Each scenario returns a JSON-able result; as a script it prints
it as the last line. With an empty control path the scenarios run on a real kernel's configfs (the realkernel
lane), counting and failing configfs calls in-process (tests/realkernel/guest/audit_control).
Plans are applied by the daemon's own ``sbps.reconcile.apply.apply`` (``run``), through
ports that drive the backend alone. Must not: mount or unmount anything (the caller owns
the emulation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from configfs.control import ControlClient
from sbps.config import TargetConfig
from sbps.core.actions import (
    Action,
    ClaimLun,
    DeleteLun,
    DeleteStorageObject,
    Plan,
    ReleaseClaim,
)
from sbps.core.errors import BackendError, PermanentError, SbpsError
from sbps.core.model import DesiredImage, Identity, ImageKind, ObjectInfo, S3Url
from sbps.core.target_state import Portal, TargetState
from sbps.reconcile.apply import apply
from sbps.reconcile.plan import PlanInput, plan
from sbps.target.lio.backend import LioBackend

IQN = "iqn.2023-06.csm.iscsi:ncn-w001"
OTHER_IQN = "iqn.2023-06.csm.iscsi:someone-else"
PORTALS = frozenset({Portal("127.0.0.1", 3260), Portal("127.0.0.2", 3260)})
# The same values as sbps.reconcile.loop.OPEN_ACCESS_ATTRIBUTES (checked by the pytest side;
# the reconciler itself needs packages Debian's python does not have).
OPEN_ACCESS = (("generate_node_acls", "1"), ("demo_mode_write_protect", "1"),
               ("cache_dynamic_acls", "1"), ("authentication", "0"))
SIZE = 1 << 20


@dataclasses.dataclass
class Env:
    mount: str
    control: str
    workdir: str

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.workdir, "cache")

    @property
    def saveconfig(self) -> str:
        return os.path.join(self.workdir, "etc", "saveconfig.json")

    def backend(self, verify_interval: float = 300.0,
                clock: Callable[[], float] | None = None) -> LioBackend:
        cfg = TargetConfig(configfs_root=os.path.join(self.mount, "target"),
                           saveconfig_path=self.saveconfig, verify_interval=verify_interval)
        if clock is None:
            return LioBackend(cfg, self.cache_dir, IQN)
        return LioBackend(cfg, self.cache_dir, IQN, clock=clock)

    def ctl(self) -> ControlClient:
        if not self.control:
            # A real kernel (the realkernel lane's guest): no side channel; the scenario
            # process counts and fails its own configfs calls instead.
            from tests.realkernel.guest.audit_control import audit_control

            return audit_control(self.mount)  # type: ignore[return-value]
        return ControlClient(self.control)


def image(n: int) -> DesiredImage:
    key = f"s3://boot-images/img-{n}/rootfs|etag{n}"
    ident = Identity(key, hashlib.sha224(key.encode()).hexdigest())
    source = ObjectInfo(S3Url("boot-images", f"img-{n}/rootfs"), f"etag{n}", SIZE)
    return DesiredImage(identity=ident, kind=ImageKind.ROOTFS, source=source, name=f"img-{n}")


def stage(env: Env, images: Sequence[DesiredImage]) -> dict[str, str]:
    """Verified, read-only cache files, as the stager leaves them."""
    os.makedirs(env.cache_dir, exist_ok=True)
    staged = {}
    for img in images:
        path = os.path.join(env.cache_dir, img.identity.digest + ".sqfs")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.truncate(SIZE)
            os.chmod(path, 0o444)
        staged[img.identity.digest] = path
    return staged


def plan_for(env: Env, state: TargetState, claims: dict[int, int],
             retire_due: frozenset[str] = frozenset(), serve: bool = True) -> tuple[Action, ...]:
    """What the planner emits for images ``n -> LUN id`` (claims already agreed)."""
    images = tuple(image(n) for n in claims)
    inp = PlanInput(desired=images, target=state, cache_dir=env.cache_dir,
                    staged=stage(env, images),
                    claims={image(n).identity.digest: lun for n, lun in claims.items()},
                    retire_due=retire_due, serve=serve, portals=PORTALS,
                    attributes=OPEN_ACCESS)
    return plan(inp).actions


class BackendPorts:
    """``apply.Effects`` for a backend alone: the plans here hold only target actions (claims
    agreed, images staged); a claim or staging action fails as not part of a scenario.
    Remembers whether each failed target action's error was temporary."""

    def __init__(self, backend: LioBackend) -> None:
        self.backend = backend
        self.temporary: dict[int, bool] = {}

    def stage(self, image: DesiredImage) -> None:
        raise PermanentError(f"staging {image.identity.name} is not part of a backend "
                             "scenario", code="not_a_target_action")

    async def claim(self, action: ClaimLun) -> int:
        raise PermanentError("claims are agreed before a backend scenario",
                             code="not_a_target_action")

    async def release(self, action: ReleaseClaim) -> None:
        raise PermanentError("claims are released outside a backend scenario",
                             code="not_a_target_action")

    async def target(self, action: Action) -> None:
        try:
            self.backend.apply(action)
        except SbpsError as exc:
            self.temporary[id(action)] = exc.temporary
            raise

    async def commit(self) -> None:
        self.backend.commit()


def run(backend: LioBackend, actions: Sequence[Action]) -> dict[str, str]:
    """Apply with sbps.reconcile.apply (a failure skips that image's later actions only, and
    the batch is committed when anything was written). Returns failed action -> error."""
    ports = BackendPorts(backend)
    report = asyncio.run(apply(Plan(tuple(actions)), ports))
    return {f"{r.action.kind}:{r.action.subject}":
            f"{'temporary' if ports.temporary.get(id(r.action)) else 'permanent'}: "
            f"{r.message}" for r in report.failed}


def converge(env: Env, claims: dict[int, int], backend: LioBackend | None = None,
             retire_due: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Read, plan, apply until the plan is empty; then prove a further pass writes nothing."""
    backend = backend or env.backend()
    rounds = []
    for _ in range(3):
        actions = plan_for(env, backend.read(), claims, retire_due)
        if not actions:
            break
        rounds.append({"actions": [a.kind for a in actions], "failed": run(backend, actions)})
    ctl = env.ctl()
    ctl.reset_counters()
    state = backend.read()
    again = plan_for(env, state, claims)
    run(backend, again)
    backend.stats()
    backend.sessions()
    return {"rounds": rounds, "second_pass_actions": len(again),
            "second_pass_writes": ctl.writes(), "state": state_json(state)}


def state_json(state: TargetState) -> dict[str, Any]:
    d = dataclasses.asdict(state)
    d["portals"] = sorted(str(p) for p in state.portals)
    d["storage_objects"] = [dataclasses.asdict(s) for s in state.storage_objects]
    d["luns"] = [[lun.index, lun.storage_object] for lun in state.luns]
    d["attributes"] = [list(a) for a in state.attributes]
    d["foreign"] = list(state.foreign)
    return d


# Scenarios --------------------------------------------------------------------------------

def scenario_converge(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    claims = {int(k): int(v) for k, v in args["claims"].items()}
    result = converge(env, claims)
    backend = env.backend()
    result["stats"] = {str(k): dataclasses.asdict(v) for k, v in backend.stats().items()}
    result["sessions"] = list(backend.sessions())
    with open(env.saveconfig) as f:
        result["saved"] = json.load(f)
    result["has_backup"] = os.path.exists(env.saveconfig + ".bak")
    return result


def scenario_foreign(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """A field agent's backstore outside the cache, its LUN on our target and on another
    target; sbps converges around them and refuses to touch them."""
    from rtslib_fb import LUN, TPG, FabricModule, FileIOStorageObject, RTSRoot, Target

    backend = env.backend()
    backend.open()  # rtslib now points at the emulation, for the direct setup below
    RTSRoot()
    other_dir = os.path.join(env.workdir, "s3fs")
    os.makedirs(other_dir, exist_ok=True)
    legacy = os.path.join(other_dir, "legacy.sqfs")
    with open(legacy, "wb") as f:
        f.truncate(SIZE)
    so = FileIOStorageObject("fieldagent01", legacy, size=SIZE, wwn="fieldagentserial")
    iscsi = FabricModule("iscsi")
    LUN(TPG(Target(iscsi, OTHER_IQN), 1), 3, so)
    LUN(TPG(Target(iscsi, IQN), 1), 9, so)
    claims = {1: 17, 2: 9, 3: 200}  # image 2 wants LUN 9, which the field agent holds
    result = converge(env, claims)
    refused = []
    for action in (DeleteLun(9, reason="test"), DeleteStorageObject("fieldagent01",
                                                                     reason="test")):
        try:
            backend.apply(action)
        except BackendError as exc:
            refused.append(str(exc))
    after = backend.read()
    result["refused"] = refused
    result["after"] = state_json(after)
    result["other_target_luns"] = [(t.wwn, lun.lun, lun.storage_object.name)
                                   for t in RTSRoot().targets for tpg in t.tpgs
                                   for lun in tpg.luns if t.wwn == OTHER_IQN]
    # Retiring image 3 (its removal due) deletes our LUN and backstore only.
    state = backend.read()
    name3 = image(3).identity.name
    images = {1: 17, 2: 9}
    result["retire_not_due"] = [a.kind for a in plan_for(env, state, images)]
    actions = plan_for(env, state, images, retire_due=frozenset({name3}))
    result["retire_actions"] = [a.kind for a in actions]
    result["retire_failed"] = run(backend, actions)
    result["retired"] = state_json(backend.read())
    with open(env.saveconfig) as f, open(env.saveconfig + ".bak") as g:
        saved, previous = json.load(f), json.load(g)
    result["saved_names"] = sorted(so["name"] for so in saved["storage_objects"])
    result["backup_names"] = sorted(so["name"] for so in previous["storage_objects"])
    return result


def scenario_eio(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """One EIO on a LUN mkdir and one on a backstore mkdir fail only those images."""
    backend = env.backend()
    ctl = env.ctl()
    claims = {1: 17, 2: 200, 3: 5, 4: 6}
    first = plan_for(env, backend.read(), claims)
    run(backend, [a for a in first if not a.subject])  # target, portals, attributes
    tpg = os.path.join(env.mount, "target", "iscsi", IQN, "tpgt_1")
    ctl.inject(os.path.join(tpg, "lun", "lun_200"), "EIO", ops=["mkdir"])
    core = os.path.join(env.mount, "target", "core")
    for index in range(16):  # whichever HBA index rtslib picks next
        ctl.inject(os.path.join(core, f"fileio_{index}", image(3).identity.name), "EIO",
                   ops=["mkdir"])
    failed = run(backend, plan_for(env, backend.read(), claims))
    ctl.clear_faults()
    middle = state_json(backend.read())
    result = converge(env, claims)
    result["failed"] = failed
    result["middle"] = middle
    return result


def scenario_batch(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """Apply one big batch (the parent kills this process part-way through)."""
    claims = {n: n for n in range(1, int(args["count"]) + 1)}
    backend = env.backend()
    print("started", flush=True)
    failed = run(backend, plan_for(env, backend.read(), claims))
    return {"failed": failed}


def scenario_leftovers(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """What a create killed at the worst moments leaves: an HBA with no object, an object
    never configured, a LUN with no link. The next pass finishes the job."""
    from sbps.core.actions import CreateTarget

    env.backend().apply(CreateTarget(IQN, reason="test"))
    target = os.path.join(env.mount, "target")
    os.makedirs(os.path.join(target, "core", "fileio_0"))
    os.makedirs(os.path.join(target, "core", "fileio_1", image(1).identity.name))
    os.makedirs(os.path.join(target, "iscsi", IQN, "tpgt_1", "lun", "lun_2"))
    return converge(env, {1: 1, 2: 2})


def scenario_drift(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """Changes made behind sbps's back between two reads of one backend: what a read sees
    at once (anything that adds or removes an object, the TPG's settings) and what only the
    next full read sees (a LUN re-linked in place), once ``verify_interval`` has passed."""
    converge(env, {1: 1, 2: 2})
    now = [1000.0]
    backend = env.backend(verify_interval=300.0, clock=lambda: now[0])
    luns = lambda state: {lun.index: lun.storage_object for lun in state.luns}  # noqa: E731
    result: dict[str, Any] = {"full": state_json(backend.read()),
                              "cached": state_json(backend.read())}
    tpg = os.path.join(env.mount, "target", "iscsi", IQN, "tpgt_1")
    lun2 = os.path.join(tpg, "lun", "lun_2")
    [link2] = [n for n in os.listdir(lun2) if os.path.islink(os.path.join(lun2, n))]
    so2 = os.path.realpath(os.path.join(lun2, link2))
    os.unlink(os.path.join(lun2, link2))
    os.rmdir(lun2)
    result["lun_removed"] = luns(backend.read())
    with open(os.path.join(tpg, "enable"), "w") as f:
        f.write("0\n")
    result["tpg_disabled"] = backend.read().tpg_enabled
    lun1 = os.path.join(tpg, "lun", "lun_1")
    [link1] = [n for n in os.listdir(lun1) if os.path.islink(os.path.join(lun1, n))]
    os.unlink(os.path.join(lun1, link1))
    os.symlink(so2, os.path.join(lun1, link1))
    result["relinked_before_verify"] = luns(backend.read())
    now[0] += 301.0
    result["relinked_after_verify"] = luns(backend.read())
    result["names"] = {str(n): image(n).identity.name for n in (1, 2)}
    return result


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    """A saveconfig document with its lists in one order (rtslib lists in directory order)."""
    c: dict[str, Any] = json.loads(json.dumps(config, sort_keys=True))
    c["storage_objects"].sort(key=lambda d: (d["plugin"], d["name"]))
    c["targets"].sort(key=lambda t: (t["fabric"], t["wwn"]))
    for target in c["targets"]:
        target["tpgs"].sort(key=lambda g: g["tag"])
        for tpg in target["tpgs"]:
            tpg["luns"].sort(key=lambda lun: lun["index"])
            tpg["portals"].sort(key=lambda p: (p["ip_address"], p["port"]))
            tpg["node_acls"].sort(key=lambda a: a["node_wwn"])
    return c


def scenario_saved(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    """saveconfig.json reuses per-object dumps between saves: after exports and a retire it
    equals rtslib's full dump; an attribute an admin changed shows once the admin's own save
    (targetcli's) replaced the file, or once the dump is older than verify_interval."""
    from rtslib_fb import RTSRoot
    from rtslib_fb.tcm import StorageObject

    now = [1000.0]
    backend = env.backend(verify_interval=300.0, clock=lambda: now[0])

    def compare() -> dict[str, Any]:
        with open(env.saveconfig) as f:
            saved = normalized(json.load(f))
        full = normalized(RTSRoot().dump())
        so1 = next(so for so in saved["storage_objects"] if so["name"] == image(1).identity.name)
        return {"equal": saved == full, "is_nonrot": so1["attributes"]["is_nonrot"]}

    def admin_sets(value: int) -> None:
        backend.open()  # rtslib points at this tree
        core = os.path.join(env.mount, "target", "core")
        path = next(os.path.join(core, hba, image(1).identity.name) for hba in os.listdir(core)
                    if os.path.isdir(os.path.join(core, hba, image(1).identity.name)))
        StorageObject.so_from_path(path).set_attribute("is_nonrot", value)

    result: dict[str, Any] = {}
    converge(env, {1: 1, 2: 2, 3: 3}, backend)
    result["exported"] = compare()
    converge(env, {1: 1, 3: 3, 4: 4}, backend, frozenset({image(2).identity.name}))
    result["retired"] = compare()
    admin_sets(1)
    converge(env, {1: 1, 3: 3, 4: 4, 5: 5}, backend)
    result["changed_unsaved"] = compare()
    with open(env.saveconfig, "a") as f:
        f.write(" ")  # the admin's tool saved
    converge(env, {1: 1, 3: 3, 4: 4, 5: 5, 6: 6}, backend)
    result["changed_saved"] = compare()
    admin_sets(0)
    now[0] += 301.0
    converge(env, {1: 1, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7}, backend)
    result["changed_aged"] = compare()
    return result


def scenario_read(env: Env, args: dict[str, Any]) -> dict[str, Any]:
    backend = env.backend()
    ctl = env.ctl()
    ctl.reset_counters()
    state = backend.read()
    return {"state": state_json(state), "writes": ctl.writes()}


SCENARIOS: dict[str, Callable[[Env, dict[str, Any]], dict[str, Any]]] = {
    "converge": scenario_converge, "foreign": scenario_foreign, "eio": scenario_eio,
    "batch": scenario_batch, "read": scenario_read, "drift": scenario_drift,
    "saved": scenario_saved, "leftovers": scenario_leftovers,
}


def main(argv: list[str]) -> int:
    name, mount, control, workdir, raw = argv
    result = SCENARIOS[name](Env(mount, control, workdir), json.loads(raw))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
