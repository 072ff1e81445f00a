"""Applying a plan: runs each action through the effects that own it, and reports per action.

Owns execution order and failure isolation only: a failed action skips the later actions of
the same subject (one image) and nothing else; every result is logged once with its
reason. Must not decide what to do (that is plan()) and must not call blocking code on the
event loop: the effects run the backend, claims and S3 in their own threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from sbps.core.actions import Action, ClaimLun, Plan, ReleaseClaim, StageImage, TargetAction
from sbps.core.errors import PermanentError, SbpsError
from sbps.core.model import DesiredImage

log = logging.getLogger(__name__)


class Effects(Protocol):
    """What apply() drives. The reconciler provides the implementation."""

    def stage(self, image: DesiredImage) -> None:
        """Start staging in the background; must return at once."""
        ...

    def claim(self, action: ClaimLun) -> Awaitable[int]:
        """Claim a LUN id (joining an existing claim); returns the agreed id."""
        ...

    def release(self, action: ReleaseClaim) -> Awaitable[None]:
        ...

    def target(self, action: TargetAction) -> Awaitable[None]:
        """Apply one target action on the backend's thread."""
        ...

    def commit(self) -> Awaitable[None]:
        """Persist the target configuration after a batch of changes."""
        ...


@dataclass(frozen=True)
class Result:
    action: Action
    ok: bool
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    skipped: bool = False


@dataclass(frozen=True)
class Report:
    results: tuple[Result, ...] = ()

    @property
    def failed(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if not r.ok and not r.skipped)

    @property
    def target_writes(self) -> int:
        return sum(1 for r in self.results if r.ok and isinstance(r.action, TargetAction))


async def apply(plan: Plan, effects: Effects) -> Report:
    results: list[Result] = []
    failed_subjects: set[str] = set()
    wrote = False
    for action in plan.actions:
        if action.subject and action.subject in failed_subjects:
            results.append(Result(action, ok=False, skipped=True, code="skipped",
                                  message="an earlier action of this image failed"))
            continue
        started = time.monotonic()
        try:
            if isinstance(action, StageImage):
                effects.stage(action.image)
            elif isinstance(action, ClaimLun):
                await effects.claim(action)
            elif isinstance(action, ReleaseClaim):
                await effects.release(action)
            elif isinstance(action, TargetAction):
                await effects.target(action)
                wrote = True
            else:
                raise PermanentError(f"{action.kind} is not an action apply() knows")
        except SbpsError as exc:
            if action.subject:
                failed_subjects.add(action.subject)
            result = Result(action, ok=False, code=exc.code, message=str(exc),
                            seconds=time.monotonic() - started)
            log.warning("action failed: %s", exc, extra=_fields(action, result))
            results.append(result)
            continue
        result = Result(action, ok=True, seconds=time.monotonic() - started)
        log.info("applied %s%s: %s", action.kind, f" {action.subject}" if action.subject
                 else "", action.reason, extra=_fields(action, result))
        results.append(result)
    if wrote:
        started = time.monotonic()
        try:
            await effects.commit()
        except SbpsError as exc:
            log.error("saving the target configuration failed: %s", exc)
            results.append(Result(_COMMIT, ok=False, code=exc.code, message=str(exc),
                                  seconds=time.monotonic() - started))
    return Report(tuple(results))


@dataclass(frozen=True)
class _Commit(Action):
    pass


_COMMIT = _Commit(reason="persist the target configuration after changes")


def _fields(action: Action, result: Result) -> dict[str, object]:
    out: dict[str, object] = {"action": action.kind, "seconds": round(result.seconds, 3)}
    if action.subject:
        out["backstore"] = action.subject
    if not result.ok:
        out["code"] = result.code
    return out
