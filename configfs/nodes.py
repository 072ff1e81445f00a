"""In-memory configfs node model: groups, attributes and symlinks, plus tree operations.

Owns: the generic configfs semantics (kernel-created "default" groups that the user cannot
remove, rmdir refused while a child item or a symlink pins the group, symlink bookkeeping,
relative readlink targets). Must not: know about LIO objects (the schema modules attach
behaviour through the hooks below) or about FUSE (``fusefs`` adapts these calls).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Show = Callable[[], str]
Store = Callable[[str], None]


def fail(code: int, message: str = "") -> OSError:
    """Build the OSError that a configfs operation returns to the caller."""
    return OSError(code, message or os.strerror(code))


@dataclass(eq=False)
class Node:
    name: str
    parent: Group | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        """Path below the mount point, e.g. ``target/core/fileio_0``."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count("/") + 1


@dataclass(eq=False)
class Attr(Node):
    show: Show | None = None
    store: Store | None = None
    admin: bool = False
    """The kernel answers EPERM to a caller without CAP_SYS_ADMIN (the CHAP attributes:
    iscsi_target_configfs.c checks ``capable(CAP_SYS_ADMIN)`` in their show and store)."""

    @property
    def mode(self) -> int:
        return (0o444 if self.show else 0) | (0o200 if self.store else 0)


@dataclass(eq=False)
class Link(Node):
    target: Group | None = None


@dataclass(eq=False)
class Group(Node):
    """A configfs directory. ``default`` groups are created by the kernel along with their parent."""

    children: dict[str, Node] = field(default_factory=dict, repr=False)
    default: bool = False
    make: Callable[[Group, str], Group] | None = field(default=None, repr=False)
    drop: Callable[[Group], None] | None = field(default=None, repr=False)
    allow_link: Callable[[Group, str, Group], None] | None = field(default=None, repr=False)
    drop_link: Callable[[Group, Link], None] | None = field(default=None, repr=False)
    linked_by: list[Link] = field(default_factory=list, repr=False)
    obj: Any = field(default=None, repr=False)

    def add(self, node: Node) -> Node:
        node.parent = self
        self.children[node.name] = node
        return node

    def attr(self, name: str, show: Show | None = None, store: Store | None = None) -> Attr:
        node = Attr(name, show=show, store=store)
        self.add(node)
        return node

    def group(self, name: str, **hooks: Any) -> Group:
        node = Group(name, default=True, **hooks)
        self.add(node)
        return node

    def items(self) -> list[Group]:
        """User-created child groups (what ``rmdir`` would have to remove first)."""
        return [c for c in self.children.values() if isinstance(c, Group) and not c.default]

    def links(self) -> list[Link]:
        return [c for c in self.children.values() if isinstance(c, Link)]


class Tree:
    """Path-level operations on a group hierarchy, with configfs error semantics."""

    def __init__(self, root: Group) -> None:
        self.root = root

    def lookup(self, path: str) -> Node:
        node: Node = self.root
        for part in (p for p in path.strip("/").split("/") if p):
            if not isinstance(node, Group) or part not in node.children:
                raise fail(errno.ENOENT)
            node = node.children[part]
        return node

    def group(self, path: str) -> Group:
        node = self.lookup(path)
        if not isinstance(node, Group):
            raise fail(errno.ENOTDIR)
        return node

    def _split(self, path: str) -> tuple[Group, str]:
        head, _, name = path.strip("/").rpartition("/")
        return self.group(head), name

    def mkdir(self, path: str) -> Group:
        parent, name = self._split(path)
        if name in parent.children:
            raise fail(errno.EEXIST)
        if parent.make is None:
            raise fail(errno.EPERM)
        child = parent.make(parent, name)
        child.default = False
        parent.add(child)
        return child

    def rmdir(self, path: str) -> None:
        parent, name = self._split(path)
        node = parent.children.get(name)
        if node is None:
            raise fail(errno.ENOENT)
        if not isinstance(node, Group):
            raise fail(errno.ENOTDIR)
        if node.default:
            raise fail(errno.EPERM)
        if self._pinned(node):
            raise fail(errno.EBUSY, "still the target of a symlink")
        if self._has_items(node):
            raise fail(errno.ENOTEMPTY)
        if node.drop is not None:
            node.drop(node)
        del parent.children[name]

    def _pinned(self, group: Group) -> bool:
        if group.linked_by:
            return True
        return any(self._pinned(c) for c in group.children.values()
                   if isinstance(c, Group) and c.default)

    def _has_items(self, group: Group) -> bool:
        if group.items() or group.links():
            return True
        return any(self._has_items(c) for c in group.children.values()
                   if isinstance(c, Group) and c.default)

    def symlink(self, path: str, target_text: str, mountpoint: str) -> Link:
        parent, name = self._split(path)
        if name in parent.children:
            raise fail(errno.EEXIST)
        target = self._resolve_target(parent, target_text, mountpoint)
        if parent.allow_link is None:
            raise fail(errno.EPERM)
        parent.allow_link(parent, name, target)
        link = Link(name, target=target)
        parent.add(link)
        target.linked_by.append(link)
        return link

    def _resolve_target(self, parent: Group, text: str, mountpoint: str) -> Group:
        if text.startswith("/"):
            mount = os.path.normpath(mountpoint)
            norm = os.path.normpath(text)
            if norm != mount and not norm.startswith(mount + "/"):
                raise fail(errno.EPERM, "symlink target outside configfs")
            rel = norm[len(mount):]
        else:
            rel = os.path.normpath(os.path.join("/", parent.path, text))
        node = self.lookup(rel)
        if isinstance(node, Link) and node.target is not None:
            node = node.target
        if not isinstance(node, Group):
            raise fail(errno.ENOENT)
        return node

    def unlink(self, path: str) -> None:
        parent, name = self._split(path)
        node = parent.children.get(name)
        if node is None:
            raise fail(errno.ENOENT)
        if not isinstance(node, Link):
            raise fail(errno.EPERM)
        if parent.drop_link is not None:
            parent.drop_link(parent, node)
        if node.target is not None:
            node.target.linked_by.remove(node)
        del parent.children[name]

    def readlink(self, path: str) -> str:
        node = self.lookup(path)
        if not isinstance(node, Link) or node.target is None:
            raise fail(errno.EINVAL)
        assert node.parent is not None
        return "../" * node.parent.depth + node.target.path
