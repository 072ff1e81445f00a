"""FUSE emulation of the Linux LIO configfs tree (``/sys/kernel/config/target``) for tests.

Owns: the public entry points (``mounted``, ``ControlClient``, ``rtslib_root``). Must not: be
imported by production code paths; the sbps daemon talks to rtslib only.
"""

from .control import ControlClient, ControlError
from .mount import Mounted, mounted, run_foreground
from .rtslib_compat import point_rtslib_at, rtslib_root

__all__ = ["ControlClient", "ControlError", "Mounted", "mounted", "point_rtslib_at",
           "rtslib_root", "run_foreground"]
