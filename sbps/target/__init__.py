"""Target backends: the protocol every backend implements (``TargetBackend``); the factory
that picks one is ``factory.make_backend``.

Owns the contract between the reconciler and a target (LIO through rtslib, or tgtd). A
backend reads live state, applies one action at a time, reports per-LUN counters, and
touches only objects sbps owns (anything else is reported as foreign). Implementations are
blocking and are called from one dedicated worker thread; callers must not call them from
the event loop.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from sbps.core.actions import Action
from sbps.core.target_state import LoggedIn, LunStats, TargetState


class TargetBackend(Protocol):
    """What the reconciler needs from a target, whichever it is."""

    name: str

    def open(self) -> None:
        """Connect to the target (blocking, idempotent); BackendError if it is not there."""
        ...

    def adopt(self, names: frozenset[str]) -> None:
        """Backstores of the field agent that sbps adopted: it may now change them."""
        ...

    def read(self) -> TargetState:
        """The live state of this worker's target; never read from a saved file."""
        ...

    def apply(self, action: Action) -> None:
        """Execute one ``TargetAction`` through the backend's one dispatch table (``HANDLERS``
        in its module, which covers every one); raise sbps.core.errors.BackendError naming
        the object, and for anything that is not a target action."""
        ...

    def commit(self) -> None:
        """Persist after a batch (LIO: saveconfig.json), so a reboot restores the LUNs."""
        ...

    def stats(self, indexes: Collection[int] | None = None) -> dict[int, LunStats]:
        """Per-LUN read counters, keyed by LUN index: of the LUNs in ``indexes`` (all when
        None) that exist."""
        ...

    def sessions(self) -> tuple[str, ...]:
        """Initiator names logged in to this worker's target."""
        ...

    def session_table(self) -> tuple[LoggedIn, ...]:
        """Every initiator logged in now, with its per-LUN counters where the target keeps
        them per initiator (blocking)."""
        ...
