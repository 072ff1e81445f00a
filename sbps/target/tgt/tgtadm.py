"""Running ``tgtadm`` and parsing what tgt 1.0.85 prints: targets, portals, statistics.

Owns the text boundary with tgtd: one blocking ``tgtadm`` call at a time with a timeout,
its failures translated into ``BackendError`` (naming the operation and the object), and
parsers that turn ``--op show``, ``--mode portal --op show`` and ``--op stat`` into frozen
values. A request that carries a CHAP secret never runs ``tgtadm`` (its arguments are
readable by every user in ``/proc``): ``new_account`` speaks tgtd's management socket
(``sbps.target.tgt.mgmt``), and ``__call__`` refuses ``--password``. Must not decide
what to change on the target: that is ``sbps.target.tgt.backend``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from sbps.core.errors import BackendError
from sbps.target.tgt.mgmt import TgtdSocket, account_new

# tgtadm exits with ETIMEDOUT/ENOTCONN-like codes when it cannot reach tgtd; those may
# pass (tgtd restarting), anything else is a refused request that will fail again.
_UNREACHABLE = ("send request", "connect to", "Transport endpoint", "Connection refused")


@dataclass(frozen=True)
class TgtLun:
    index: int
    type: str
    scsi_id: str
    scsi_sn: str
    size_mb: int
    block_size: int
    readonly: bool
    online: bool
    bstype: str
    path: str


@dataclass(frozen=True)
class Nexus:
    sid: int
    initiator: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class TgtTarget:
    tid: int
    name: str
    state: str
    nexus: tuple[Nexus, ...]
    luns: tuple[TgtLun, ...]
    accounts: tuple[str, ...]
    """Incoming CHAP accounts bound to the target (outgoing ones are not listed)."""
    acl: tuple[str, ...]
    outgoing: tuple[str, ...] = ()
    """The outgoing account (mutual CHAP: the target proves itself), if bound."""


@dataclass(frozen=True)
class StatRow:
    """One ``--op stat`` line: counters of one LUN as seen by one session (I_T nexus)."""

    tid: int
    lun: int
    sid: int
    read_bytes: int
    read_cmds: int
    write_bytes: int
    write_cmds: int
    errors: int


class Tgtadm:
    """Runs ``tgtadm -C <control port> --lld iscsi ...`` with a timeout."""

    def __init__(self, program: str = "tgtadm", control_port: int = 0,
                 timeout: float = 15.0) -> None:
        self.program = program
        self.control_port = control_port
        self.timeout = timeout
        self.socket = TgtdSocket(control_port, timeout)

    def __call__(self, args: Sequence[str], *, operation: str, obj: str) -> str:
        if "--password" in args:
            raise BackendError(operation, obj, "a secret is never put on a command line: "
                               "use new_account")
        argv = [self.program, "-C", str(self.control_port), "--lld", "iscsi", *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(operation, obj, f"tgtadm did not answer within "
                               f"{self.timeout:g}s", temporary=True,
                               code="tgt_timeout") from exc
        except OSError as exc:
            raise BackendError(operation, obj, f"cannot run {self.program}: {exc.strerror}",
                               code="tgt_missing") from exc
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip() or "no message")
            reason = reason.removeprefix("tgtadm: ")
            temporary = any(s in reason for s in _UNREACHABLE)
            raise BackendError(operation, obj, f"{reason} (tgtadm exit {done.returncode})",
                               temporary=temporary,
                               code="tgt_unreachable" if temporary else "tgt_refused")
        return done.stdout

    def new_account(self, user: str, secret: str, *, operation: str, obj: str) -> None:
        """``--mode account --op new --user U --password S`` over tgtd's socket."""
        try:
            request = account_new(user, secret)
        except ValueError as exc:
            raise BackendError(operation, obj, str(exc)) from exc
        self.socket(request, operation=operation, obj=obj)

    def show(self) -> tuple[TgtTarget, ...]:
        return parse_show(self(["--mode", "target", "--op", "show"], operation="show",
                               obj="targets"))

    def portals(self) -> tuple[str, ...]:
        return parse_portals(self(["--mode", "portal", "--op", "show"], operation="show",
                                  obj="portals"))

    def stat(self, tid: int) -> tuple[StatRow, ...]:
        return parse_stat(self(["--mode", "target", "--op", "stat", "--tid", str(tid)],
                               operation="stat", obj=f"tid {tid}"))

    def accounts(self) -> tuple[str, ...]:
        text = self(["--mode", "account", "--op", "show"], operation="show", obj="accounts")
        return tuple(line.strip() for line in text.splitlines()[1:] if line.strip())


def parse_show(text: str) -> tuple[TgtTarget, ...]:
    """Parse ``tgtadm --mode target --op show`` (tgt 1.0.85 layout, indented by 4s)."""
    targets: list[TgtTarget] = []
    for block in _target_blocks(text):
        targets.append(_parse_target(block))
    return tuple(targets)


def _target_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("Target "):
            blocks.append([line])
        elif blocks and line.strip():
            blocks[-1].append(line)
    return blocks


def _parse_target(lines: list[str]) -> TgtTarget:
    head, _, name = lines[0][len("Target "):].partition(": ")
    state = ""
    nexus: list[Nexus] = []
    luns: list[dict[str, str]] = []
    accounts: list[str] = []
    outgoing: list[str] = []
    acl: list[str] = []
    section = ""
    for line in lines[1:]:
        depth = (len(line) - len(line.lstrip(" "))) // 4
        text = line.strip()
        if depth == 1:
            section = text.rstrip(":")
            continue
        key, sep, value = text.partition(": ")
        if not sep and text.endswith(":"):
            key, value = text[:-1], ""
        if section == "System information" and key == "State":
            state = value
        elif section == "I_T nexus information":
            if key == "I_T nexus":
                nexus.append(Nexus(int(value), "", ()))
            elif key == "Initiator" and nexus:
                initiator = value.split(" alias: ")[0].strip()
                nexus[-1] = Nexus(nexus[-1].sid, initiator, nexus[-1].addresses)
            elif key == "IP Address" and nexus:
                nexus[-1] = Nexus(nexus[-1].sid, nexus[-1].initiator,
                                  (*nexus[-1].addresses, value))
        elif section == "LUN information":
            if key == "LUN" and depth == 2:
                luns.append({"LUN": value})
            elif luns:
                luns[-1][key] = value
        elif section == "Account information":
            if text.endswith("(outgoing)"):
                outgoing.append(text.removesuffix("(outgoing)").strip())
            else:
                accounts.append(text)
        elif section == "ACL information":
            acl.append(text)
    return TgtTarget(int(head), name.strip(), state, tuple(nexus),
                     tuple(_lun(fields) for fields in luns), tuple(accounts), tuple(acl),
                     tuple(outgoing))


def _lun(fields: dict[str, str]) -> TgtLun:
    # "Size: 3 MB, Block size: 512" arrives split as Size -> "3 MB, Block size: 512".
    size, _, block = fields.get("Size", "0 MB").partition(", Block size: ")
    path = fields.get("Backing store path", "")
    return TgtLun(
        index=int(fields["LUN"]), type=fields.get("Type", ""),
        scsi_id=fields.get("SCSI ID", "").strip(), scsi_sn=fields.get("SCSI SN", "").strip(),
        size_mb=_int(size.split()[0] if size.split() else "0"), block_size=_int(block),
        readonly=fields.get("Readonly") == "Yes", online=fields.get("Online") == "Yes",
        bstype=fields.get("Backing store type", ""),
        path="" if path == "None" else path)


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


def parse_portals(text: str) -> tuple[str, ...]:
    """``Portal: 127.0.0.1:3261,1`` lines -> ``("127.0.0.1:3261",)`` (without the tpgt)."""
    out = []
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Portal" and value:
            out.append(value.rsplit(",", 1)[0])
    return tuple(out)


def parse_stat(text: str) -> tuple[StatRow, ...]:
    """Parse ``--op stat``: a header, then ``tid lun sid rd_subm(bytes cmds) rd_done(bytes
    cmds) wr_subm(bytes cmds) wr_done(bytes cmds) errs`` per LUN and session. The done
    columns are used: they count completed commands."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 12 or not parts[0].isdigit():
            continue
        n = [int(p) for p in parts]
        rows.append(StatRow(tid=n[0], lun=n[1], sid=n[2], read_bytes=n[5], read_cmds=n[6],
                            write_bytes=n[9], write_cmds=n[10], errors=n[11]))
    return tuple(rows)
