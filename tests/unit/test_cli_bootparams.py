"""``sbpsctl bootparams parse`` and the argument handling of ``bootparams IMAGE_ID``."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from sbps.cli import main
from sbps.core import identity

EXAMPLE = ("root=sbps-s3:s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs:"
           "b6ea7a2314d54dead0c94223863b3488-1977:sbps:v1:iqn.2023-06.csm.iscsi:"
           "_sbps-hsn._tcp.my-system.my-site-domain:300")
IDENT = identity.rootfs("s3://boot-images/4fab0408-0bfe-4668-b957-964f8ff0e4e9/rootfs",
                        "b6ea7a2314d54dead0c94223863b3488-1977")


@pytest.fixture
def empty_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SBPS_MARSHAL_"):
            monkeypatch.delenv(name)
    path = tmp_path / "marshal.toml"
    path.write_text("")
    return path


def test_parse_prints_fields_serial_and_wwid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootparams", "parse", EXAMPLE]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["serial"] == IDENT.serial
    assert lines["wwid"] == IDENT.wwid
    assert lines["etag"] == "b6ea7a2314d54dead0c94223863b3488-1977"
    assert lines["srv_name"] == "_sbps-hsn._tcp.my-system.my-site-domain"
    assert lines["ramroot"] == "false"


def test_parse_json_and_whole_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootparams", "parse", "console=ttyS0", EXAMPLE + ":1", "quiet",
                 "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["serial"], body["wwid"], body["ramroot"]) == (IDENT.serial, IDENT.wwid,
                                                               True)


def test_parse_reads_stdin(capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"BOOT_IMAGE=x {EXAMPLE}\n"))
    assert main(["bootparams", "parse", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timeout"] == 300


@pytest.mark.parametrize(("text", "field"), [
    (EXAMPLE.replace("sbps-s3:", "craycps-s3:"), "provider"),
    (EXAMPLE.replace(":300", ":-1"), "timeout"),
    (EXAMPLE.replace(":v1:", ":v2:"), "schema"),
])
def test_parse_bad_input_exits_2_naming_the_field(
        text: str, field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootparams", "parse", text]) == 2
    assert f"root=: {field}: " in capsys.readouterr().err
    assert main(["bootparams", "parse", text, "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["field"] == field
    assert field in captured.err


def test_parse_refuses_image_options_and_empty_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootparams", "parse", EXAMPLE, "--format", "bos"]) == 2
    assert "--format only apply to bootparams IMAGE_ID" in capsys.readouterr().err
    assert main(["bootparams", "parse"]) == 2
    assert "needs a root=" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "named"), [
    (["--domain", "example.com"], "--system / node.system_name"),
    (["--system", "sys"], "--domain / node.site_domain"),
    (["--system", "bad_name", "--domain", "example.com"], "--system / node.system_name"),
    (["--system", "sys", "--domain", "a..b"], "--domain / node.site_domain"),
    (["--system", "sys", "--domain", "example.com", "--timeout", "0"], "--timeout"),
])
def test_image_settings_errors_name_the_flag_and_key(
        argv: list[str], named: str, empty_config: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(empty_config), "bootparams",
                 "4fab0408-0bfe-4668-b957-964f8ff0e4e9", *argv])
    assert code == 2
    assert f"configuration error: {named}" in capsys.readouterr().err


def test_image_usage_errors(empty_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootparams", "a", "b"]) == 2
    assert "one IMAGE_ID" in capsys.readouterr().err
    assert main(["bootparams", "a", "--json", "--format", "bos"]) == 2
    assert "exclusive" in capsys.readouterr().err
