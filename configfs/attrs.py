"""Helpers that bind configfs attribute files to plain Python values.

Owns: value parsing with the kernel's error codes (EINVAL for malformed numbers, booleans that
are not 0/1), and dict-backed attribute groups. Must not: hold any LIO object state itself.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable

from .nodes import Attr, Group, fail


def parse_int(text: str) -> int:
    """Parse like kstrtoul(..., 0): decimal, 0x hex or 0 octal, one trailing newline allowed."""
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise fail(errno.EINVAL, f"invalid number {text!r}") from None
    if value < 0:
        raise fail(errno.EINVAL, f"negative value {text!r}")
    return value


def parse_bool(text: str) -> int:
    value = parse_int(text)
    if value not in (0, 1):
        raise fail(errno.EINVAL, f"{text!r} is not 0 or 1")
    return value


def parse_str(text: str, limit: int = 4096) -> str:
    value = text.rstrip("\n")
    if len(value) > limit:
        raise fail(errno.EINVAL, "value too long")
    return value


def line(value: object) -> str:
    return f"{value}\n"


def values_group(
    group: Group,
    values: dict[str, int | str],
    *,
    readonly: Iterable[str] = (),
    booleans: Iterable[str] = (),
    strings: Iterable[str] = (),
    guard: Callable[[str, int | str], None] | None = None,
) -> Group:
    """Create one attribute per key of ``values``; writes update the dict in place."""
    ro, bools, strs = set(readonly), set(booleans), set(strings)
    for name in values:
        group.attr(name, show=_shower(values, name),
                   store=None if name in ro else _storer(values, name, name in bools,
                                                         name in strs, guard))
    return group


def _shower(values: dict[str, int | str], name: str) -> Callable[[], str]:
    return lambda: line(values[name])


def _storer(values: dict[str, int | str], name: str, is_bool: bool, is_str: bool,
            guard: Callable[[str, int | str], None] | None) -> Callable[[str], None]:
    def store(text: str) -> None:
        parse = parse_str if is_str else parse_bool if is_bool else parse_int
        value: int | str = parse(text)
        if guard is not None:
            guard(name, value)
        values[name] = value
    return store


def auth_group(group: Group, values: dict[str, int | str]) -> Group:
    """CHAP credentials; ``authenticate_target`` is read-only and derived from the mutual pair."""
    names = ("userid", "password", "userid_mutual", "password_mutual")
    for name in names:
        values.setdefault(name, "")
    values_group(group, values, strings=names)

    def authenticate_target() -> str:
        mutual = values["userid_mutual"] not in ("", "NULL")
        return line(int(mutual and values["password_mutual"] not in ("", "NULL")))

    group.attr("authenticate_target", show=authenticate_target)
    for name in (*names, "authenticate_target"):
        node = group.children[name]
        assert isinstance(node, Attr)
        node.admin = True
    return group
