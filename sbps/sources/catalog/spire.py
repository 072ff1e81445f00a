"""SPIRE as the field agent uses it for IMS: the agent's command line and the SVIDs it takes.

The field agent (Cray-HPE/sbps-marshal, ``marshal/lib/auth.py``) runs
``<agent> api fetch jwt -audience <aud> -socketPath <sock> -output json`` and takes the
first SVID whose id is exactly ``spiffe://shasta/ncn/workload/sbps-marshal`` or
``spiffe://shasta/ncn/<xname>/workload/sbps-marshal``, the xname read from
``/etc/cray/xname`` at each fetch (a missing file leaves only the first id). This module
builds that command line and that choice; ``auth.TokenCommand`` runs it. Must not run
anything, log tokens or do HTTP.
"""

from __future__ import annotations

import logging
import re

from sbps.config import CatalogConfig

log = logging.getLogger(__name__)

#: The workload id every NCN's agent can be issued.
NCN_SVID = "spiffe://shasta/ncn/workload/sbps-marshal"
#: The per-node workload id, with the node's xname.
XNAME_SVID = "spiffe://shasta/ncn/{xname}/workload/sbps-marshal"
#: An xname is a few dozen characters of letters and digits (x3000c0s1b0n0).
_XNAME = re.compile(r"^[A-Za-z0-9]{1,64}$")


def agent_argv(cfg: CatalogConfig) -> list[str]:
    """The SPIRE agent's command line, word for word as the field agent builds it."""
    return [cfg.spire_agent, "api", "fetch", "jwt", "-audience", cfg.token_audience,
            "-socketPath", cfg.spire_socket, "-output", "json"]


def read_xname(path: str) -> str | None:
    """This node's xname, or None when the file is missing, unreadable or not an xname."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(256).strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.debug("no xname: %s", exc, extra={"path": path})
        return None
    if not _XNAME.match(text):
        log.warning("%s does not hold an xname; only the SVID %s is accepted", path,
                    NCN_SVID, extra={"path": path})
        return None
    return text


def svid_pattern(xname_file: str) -> str:
    """The pattern (for ``auth.select_token``) matching exactly the SVID ids the field takes."""
    ids = [NCN_SVID]
    xname = read_xname(xname_file)
    if xname is not None:
        ids.append(XNAME_SVID.format(xname=xname))
    return "^(?:" + "|".join(re.escape(i) for i in ids) + ")$"
