"""Both programs say their version, and every option of every command has a help text."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from sbps import __version__
from sbps.cli import build_parser
from sbps.cli import main as sbpsctl
from sbps.daemon.main import build_parser as daemon_parser
from sbps.daemon.main import parse_args


def _parsers(p: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help() -> None:
    missing = []
    for name, p in [*_parsers(build_parser(), "sbpsctl"),
                    *_parsers(daemon_parser(), "sbps-marshal")]:
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


@pytest.mark.parametrize("run", [sbpsctl, parse_args])
def test_version(run: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run(["--version"])  # type: ignore[operator]
    assert done.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f" {__version__}")


def test_daemon_says_when_it_runs_on_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    import sys

    import sbps.daemon.main

    class Stop:
        def __init__(self, loaded: object) -> None:
            pass

        async def run(self, once: bool = False) -> int:
            return 0

    monkeypatch.setenv("SBPS_MARSHAL_RECONCILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(sys.modules["sbps.config.load"], "DEFAULT_PATH",
                        str(tmp_path / "absent.toml"))
    monkeypatch.setattr(sbps.daemon.main, "Daemon", Stop)
    monkeypatch.setattr(sbps.daemon.main.logs, "setup", lambda *a: None)
    assert sbps.daemon.main.main([]) == 0
    lines = [r.getMessage() for r in caplog.records if "absent.toml" in r.getMessage()]
    assert lines == [f"configuration: {tmp_path / 'absent.toml'} does not exist: running on "
                     "defaults and SBPS_MARSHAL_* environment variables"]
    caplog.clear()
    present = tmp_path / "present.toml"
    present.write_text("")
    assert sbps.daemon.main.main(["--config", str(present)]) == 0
    assert not [r for r in caplog.records if "does not exist" in r.getMessage()]
