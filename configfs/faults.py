"""Test hooks that sit in front of every mutating filesystem call: error injection and counting.

Owns: the injected-fault table and the mutation counters that the control channel exposes.
Must not: change the configfs tree or know about FUSE; ``fusefs`` asks ``check`` and ``count``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

MUTATIONS = ("write", "mkdir", "rmdir", "symlink", "unlink")


def errno_of(value: int | str) -> int:
    """Accept ``"EIO"`` or ``5``."""
    if isinstance(value, int):
        return value
    code = getattr(errno, value.upper(), None)
    if not isinstance(code, int):
        raise ValueError(f"unknown errno name {value!r}")
    return code


@dataclass
class Fault:
    ident: int
    path: str
    error: int
    ops: frozenset[str]
    prefix: bool
    once: bool

    def matches(self, op: str, path: str) -> bool:
        if op not in self.ops:
            return False
        if self.prefix:
            return path == self.path or path.startswith(self.path.rstrip("/") + "/")
        return path == self.path


@dataclass
class Faults:
    faults: list[Fault] = field(default_factory=list)
    next_id: int = 1

    def inject(self, path: str, error: int | str, ops: tuple[str, ...] = MUTATIONS,
               prefix: bool = False, once: bool = True) -> int:
        unknown = set(ops) - set(MUTATIONS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        fault = Fault(self.next_id, _norm(path), errno_of(error), frozenset(ops), prefix, once)
        self.next_id += 1
        self.faults.append(fault)
        return fault.ident

    def clear(self, ident: int | None = None) -> None:
        self.faults = [f for f in self.faults if ident is not None and f.ident != ident]

    def check(self, op: str, path: str) -> int | None:
        """Return the errno to fail ``op`` on ``path`` with, consuming one-shot faults."""
        norm = _norm(path)
        for fault in self.faults:
            if fault.matches(op, norm):
                if fault.once:
                    self.faults.remove(fault)
                return fault.error
        return None

    def describe(self) -> list[dict[str, object]]:
        return [{"id": f.ident, "path": f.path, "errno": errno.errorcode.get(f.error, f.error),
                 "ops": sorted(f.ops), "prefix": f.prefix, "once": f.once} for f in self.faults]


@dataclass
class Counters:
    """Successful mutations by kind; failed (injected or refused) calls are not counted."""

    by_op: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MUTATIONS, 0))
    log: list[tuple[str, str]] = field(default_factory=list)

    def count(self, op: str, path: str) -> None:
        self.by_op[op] += 1
        self.log.append((op, _norm(path)))

    def reset(self) -> None:
        self.by_op = dict.fromkeys(MUTATIONS, 0)
        self.log.clear()

    def snapshot(self) -> dict[str, object]:
        return {"total": sum(self.by_op.values()), "by_op": dict(self.by_op),
                "log": [list(entry) for entry in self.log]}


def _norm(path: str) -> str:
    return "/".join(p for p in path.split("/") if p)
