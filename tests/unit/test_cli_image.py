"""The ``image`` command group: other modules add actions through ``add_image_command``."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from sbps.cli import build_parser
from sbps.cli.image import add_image_command, register


def _hold(actions: Any) -> None:
    p = actions.add_parser("hold")
    p.add_argument("image_id")
    p.set_defaults(func=lambda args: 0)


@pytest.mark.parametrize("first", ["image", "other"])
def test_actions_join_the_group_in_any_order(first: str) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    if first == "image":
        register(sub)
        add_image_command(sub, "hold", _hold)
    else:
        add_image_command(sub, "hold", _hold)
        register(sub)
    args = parser.parse_args(["image", "hold", "abc"])
    assert (args.image_command, args.image_id) == ("hold", "abc")
    assert parser.parse_args(["image", "build", "dir", "--name", "n"]).image_command == "build"
    with pytest.raises(ValueError, match="twice"):
        add_image_command(sub, "hold", _hold)
    with pytest.raises(ValueError, match="did not add"):
        add_image_command(sub, "promote", lambda actions: None)


def test_sbpsctl_has_image_build_check_label() -> None:
    parser = build_parser()
    args = parser.parse_args(["image", "build", "src", "--name", "n", "--no-label",
                              "--dry-run", "--compression", "zstd"])
    assert (args.label, args.dry_run, args.compression) == (False, True, "zstd")
    assert parser.parse_args(["image", "label", "id", "--remove"]).remove is True
    assert parser.parse_args(["image", "check", "x", "--strict"]).strict is True
