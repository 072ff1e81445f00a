"""The backend ``target.backend`` names.

Owns the choice only; each backend is imported when chosen, so that a host without rtslib
can run the tgt backend and the other way round. Must not be imported by a backend.
"""

from __future__ import annotations

from sbps.config import Config
from sbps.config.choices import BackendKind
from sbps.target import TargetBackend


def make_backend(cfg: Config, iqn: str) -> TargetBackend:
    """The configured backend (``target.backend``), imported only when chosen, so that a
    host without rtslib can run the tgt backend and the other way round. No side effects:
    the backend connects to the target on first use (``open()``)."""
    if cfg.target.backend is BackendKind.TGT:
        from sbps.target.tgt.backend import from_config

        return from_config(cfg, iqn)
    from sbps.target.lio.backend import LioBackend

    return LioBackend(cfg.target, cfg.stage.cache_dir, iqn)
