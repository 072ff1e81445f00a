"""What an operator asks first: who is logged in, and why an image is or is not exported.

Owns two admin documents and their handlers: ``GET /v1/sessions`` (the initiators logged
in now, from the target's own session table, with each LUN's read counters, per initiator
and LUN where the target counts that) and ``GET /v1/why/{image}`` (the steps an image goes
through on this worker, label to export, each with its verdict, from the status snapshot).
``why_doc`` is pure. Must not change anything, and must not read IMS or S3: what the daemon
does not know (a record it never saw as labelled) ``sbpsctl why`` asks IMS itself.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sbps.core.actions import ClaimLun, ReleaseClaim
from sbps.core.model import ImageState
from sbps.core.target_state import LoggedIn, LunStats
from sbps.publish.http.catalog import iso, records
from sbps.publish.http.deps import DEPS
from sbps.publish.http.source import Status
from sbps.reconcile.lifecycle import ImageStatus


def _lun(stats: LunStats, keys: dict[int, str]) -> dict[str, Any]:
    return {"lun_id": stats.index, "key": keys.get(stats.index), "read_bytes": stats.read_bytes,
            "commands": stats.commands}


def sessions_doc(status: Status, table: tuple[LoggedIn, ...]) -> dict[str, Any]:
    target = status.target
    keys = {lun.index: lun.storage_object for lun in target.luns} if target else {}
    return {
        "iqn": status.iqn, "backend": status.backend,
        "sessions": [{"initiator": s.initiator, "addresses": list(s.addresses),
                      "luns": None if s.luns is None else [_lun(x, keys) for x in s.luns]}
                     for s in table],
        "luns": [_lun(status.stats[i], keys) for i in sorted(keys) if i in status.stats],
        "counters_at": iso(status.stats_at),
    }


def _find(status: Status, query: str) -> ImageStatus | None:
    for s in status.images:
        names = {s.name} | {img.identity.key for img in records(s) if img} | {
            img.ims_id for img in records(s) if img and img.ims_id}
        if query in names:
            return s
    return None


def _step(step: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"step": step, "ok": ok, "detail": detail}


def why_doc(status: Status, query: str) -> dict[str, Any]:
    """Why ``query`` (an IMS id, an identity key or a backstore name) is or is not exported
    here: the steps in order; the first one not ok is the answer."""
    found = _find(status, query)
    problems = [p for p in status.problems if query in (p.obj, p.obj.split(" ")[0])]
    steps = []
    if found is None:
        detail = "; ".join(f"{p.field}: {p.reason} ({p.code})" for p in problems)
        steps.append(_step("catalog", False, detail or "not in this worker's catalog: not "
                           "labelled, filtered out, or not listed by IMS (sbpsctl why asks "
                           "IMS)"))
        return {"image": query, "known": False, "exported": False, "state": None,
                "steps": steps, "problems": [p.__dict__ for p in problems]}
    img = found.image
    steps.append(_step("catalog", True, f"labelled and in the catalog as {found.name}"
                       + (f" (IMS {img.ims_id})" if img and img.ims_id else "")))
    state, reason = found.state, found.reason
    # FAILED is a failed download or verification (with backoff); claims and target
    # actions that failed are in the last pass's report.
    failed = state is ImageState.FAILED
    errors = [r for r in status.last_report.failed if r.action.subject == found.name]
    if state in (ImageState.DISCOVERED, ImageState.STAGING):
        steps.append(_step("staging", None, f"{state.value}: downloading and verifying"))
    elif failed:
        steps.append(_step("staging", False, f"failed: {reason} (attempt {found.attempts}"
                           + (f", next at {iso(found.retry_at)})" if found.retry_at else ")")))
    else:
        steps.append(_step("staging", True, "staged and verified in the cache"))
    claim_errors = [r for r in errors if isinstance(r.action, (ClaimLun, ReleaseClaim))]
    if found.lun_id is not None:
        steps.append(_step("claim", True, f"LUN id {found.lun_id} (agreed in the bucket)"))
    elif claim_errors:
        steps.append(_step("claim", False, f"{claim_errors[0].code}: "
                           f"{claim_errors[0].message}"))
    elif not failed:
        steps.append(_step("claim", None, "no LUN id agreed yet"))
    for n in (n for n in status.notes if n.subject in (found.name, query)):
        steps.append(_step("conflict", False, f"{n.code}: {n.message}"))
    target_errors = [r for r in errors if r not in claim_errors]
    open_ = status.gate_open and status.serving
    steps.append(_step("gate", open_, "serving" if open_ else
                       "not serving: " + ("the node gate is closed" if not status.gate_open
                                          else "drained or draining")))
    target = status.target
    lun = next((x for x in target.luns if x.storage_object == found.name), None) \
        if target else None
    if lun is not None:
        steps.append(_step("export", True, f"exported as LUN {lun.index}"
                           + ("" if state is not ImageState.RETIRING else
                              " (retiring: kept until idle)")))
    elif target_errors:
        steps.append(_step("export", False, f"{target_errors[0].action.kind} failed: "
                           f"{target_errors[0].code}: {target_errors[0].message}"))
    else:
        steps.append(_step("export", False if failed else None, "not exported"))
    last = reason if failed else (f"{errors[0].code}: {errors[0].message}" if errors
                                  else None)
    return {"image": query, "known": True, "exported": lun is not None, "state": state.value,
            "held": found.held, "last_error": last, "steps": steps,
            "problems": [p.__dict__ for p in problems]}


async def get_sessions(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    status = await deps.control.refresh_counters()
    table = await deps.control.session_table()
    return web.json_response(sessions_doc(status, table))


async def get_why(request: web.Request) -> web.Response:
    status = request.app[DEPS].source.snapshot()
    return web.json_response(why_doc(status, request.match_info["image"]))
