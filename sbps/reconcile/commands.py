"""The admin levers on one image version, as commands: hold, release, retire now, promote.

Owns ``ImageAction`` (the names the API route ``/v1/images/{key}/{action}`` and ``sbpsctl
image`` use), what a command answers (``Lever``), the levers in force (``Levers``), and
``ImageLevers``, the only writer of the lifecycle's held and forced sets outside the
lifecycle itself. Refusals are typed: ``InputError`` with code ``not_found`` (no such image
on this worker) or ``conflict`` (retire-now of an image that is not retiring, or is held).
Must not do I/O and must not trigger passes (the reconciler does, after a command).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sbps.core.errors import InputError
from sbps.core.model import ImageState
from sbps.reconcile.lifecycle import Lifecycle
from sbps.reconcile.status import Status


class ImageAction(enum.Enum):
    HOLD = "hold"
    """Never retire this image's LUN until released."""
    RELEASE = "release"
    """Undo hold."""
    RETIRE_NOW = "retire-now"
    """Remove a retiring image's LUN now, even if it is still read."""
    PROMOTE = "promote"
    """Serve a re-uploaded PE image's new content (the old LUN goes first)."""


@dataclass(frozen=True)
class Lever:
    """What an image command left in force, and the pass that acts on it."""

    key: str
    action: ImageAction
    held: bool
    forced: bool
    pass_number: int
    etag: str = ""
    """promote: the etag this fleet now agrees on."""


@dataclass(frozen=True)
class Levers:
    """Images held (never retired) and forced (retired at the next pass), by key."""

    held: frozenset[str] = frozenset()
    forced: frozenset[str] = frozenset()


class ImageLevers:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle

    def current(self) -> Levers:
        return Levers(frozenset(self.lifecycle.held), frozenset(self.lifecycle.forced))

    def hold(self, key: str, status: Status) -> None:
        self._known(key, status)
        self.lifecycle.held.add(key)

    def release(self, key: str, status: Status) -> None:
        self._known(key, status)
        self.lifecycle.held.discard(key)

    def retire_now(self, key: str, status: Status) -> None:
        state = self._known(key, status)
        if state is not ImageState.RETIRING:
            now = state.value if state else "untracked"
            raise InputError(key, "key", f"image {key} is {now}, not retiring: only a "
                             "retiring image can be retired now", code="conflict")
        if key in self.lifecycle.held:
            raise InputError(key, "key", f"image {key} is held; release it first",
                             code="conflict")
        self.lifecycle.forced.add(key)

    def command(self, action: ImageAction, key: str, status: Status) -> None:
        """Hold, release or retire-now (promote is the reconciler's: it needs the claims)."""
        if action is ImageAction.PROMOTE:
            raise ValueError("promote is not a lifecycle lever")
        {ImageAction.HOLD: self.hold, ImageAction.RELEASE: self.release,
         ImageAction.RETIRE_NOW: self.retire_now}[action](key, status)

    def lever(self, key: str, action: ImageAction, pass_number: int) -> Lever:
        return Lever(key, action, key in self.lifecycle.held, key in self.lifecycle.forced,
                     pass_number)

    def _known(self, key: str, status: Status) -> ImageState | None:
        """The image's state on this worker; None: on the target but not tracked."""
        found = self.lifecycle.get(key)
        if found is not None:
            return found.state
        for s in status.images:
            if s.name == key:
                return s.state
        target = status.target
        if target is not None and any(so.name == key for so in target.storage_objects):
            return None
        raise InputError(key, "key", f"no image with key {key!r} on this worker",
                         code="not_found")
