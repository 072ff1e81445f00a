"""Target backends: the protocol every backend implements, and the factory.

Owns the contract between the reconciler and a target (LIO through rtslib, or tgtd). A
backend reads live state, applies one action at a time, reports per-LUN counters, and
touches only objects sbps owns (anything else is reported as foreign). Implementations are
blocking and are called from one dedicated worker thread; callers must not call them from
the event loop.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

from sbps.actions import Action
from sbps.config import Config
from sbps.target_state import LunStats, TargetState

if TYPE_CHECKING:
    from sbps.config.schema import Config


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
        """Execute one target action; raise sbps.errors.BackendError naming the object."""
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


def make_backend(cfg: Config, iqn: str) -> TargetBackend:
    """The configured backend (``target.backend``), imported only when chosen, so that a
    host without rtslib can run the tgt backend and the other way round. No side effects:
    the backend connects to the target on first use (``open()``)."""
    if cfg.target.backend == "tgt":
        from sbps.backends.tgt import from_config

        return from_config(cfg, iqn)
    from sbps.backends.lio import LioBackend

    return LioBackend(cfg.target, cfg.stage.cache_dir, iqn)
