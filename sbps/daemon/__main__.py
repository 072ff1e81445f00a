"""``python -m sbps.daemon``: the same as ``sbps-marshal``."""

from sbps.daemon.main import run

run()
