"""Configuration: defaults, file, environment, aliases, validation messages, rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sbps.cli import main as sbpsctl
from sbps.config import load, parse_duration, parse_size
from sbps.config.render import as_dict, example
from sbps.core.errors import ConfigError, ConfigErrors

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "marshal.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_the_field_agent() -> None:
    cfg = load(None, env={}).config
    assert cfg.catalog.api_gateway == "https://api-gw-service-nmn.local"
    assert cfg.catalog.ims_uri == "apis/ims/v3/images"
    assert cfg.catalog.timeout == 10
    assert cfg.s3.bucket == "boot-images"
    assert cfg.s3.credential_file == "/root/.ims.s3fs"
    assert cfg.target.saveconfig_path == "/etc/target/saveconfig.json"
    assert cfg.target.configfs_root == "/sys/kernel/config/target"
    assert (cfg.target.lun_min, cfg.target.lun_max) == (1, 255)


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[reconcile]\ninterval = "2m"\n[s3]\nbucket = "imgs"\n')
    loaded = load(path, env={"SBPS_MARSHAL_S3_BUCKET": "other"},
                  flags={"log.level": "debug"})
    assert loaded.config.reconcile.interval == 120
    assert loaded.config.s3.bucket == "other"
    assert loaded.sources["reconcile.interval"] == f"file {path}"
    assert loaded.sources["s3.bucket"] == "env SBPS_MARSHAL_S3_BUCKET"
    assert loaded.sources["log.level"] == "flag"


@pytest.mark.parametrize(("alias", "value", "key", "expected"), [
    ("SCAN_FREQUENCY", "77", "reconcile.interval", 77.0),
    ("API_GATEWAY", "https://gw.example", "catalog.api_gateway", "https://gw.example"),
    ("IMS_URI", "v3/images", "catalog.ims_uri", "v3/images"),
    ("IMS_TAGGING", "false", "catalog.tagging", False),
    ("IMS_TIMEOUT", "5", "catalog.timeout", 5.0),
    ("S3_HOST", "rgw.example", "s3.host", "rgw.example"),
    ("S3_PROTO", "http", "s3.proto", "http"),
    ("S3_BUCKET", "bi", "s3.bucket", "bi"),
    ("S3_CREDENTIAL_FILE", "/etc/cred", "s3.credential_file", "/etc/cred"),
    ("LIO_SAVE_FILE", "/tmp/save.json", "target.saveconfig_path", "/tmp/save.json"),
])
def test_field_agent_aliases(alias: str, value: str, key: str, expected: object) -> None:
    cfg = load(None, env={f"SBPS_MARSHAL_{alias}": value}).config
    section, name = key.split(".")
    assert getattr(getattr(cfg, section), name) == expected


def test_new_name_wins_over_alias() -> None:
    loaded = load(None, env={"SBPS_MARSHAL_SCAN_FREQUENCY": "77",
                             "SBPS_MARSHAL_RECONCILE_INTERVAL": "12"})
    assert loaded.config.reconcile.interval == 12
    assert any("SCAN_FREQUENCY is ignored" in w for w in loaded.warnings)


@pytest.mark.parametrize("name", ["TARGETCLI_BIN", "SQUASHFS_S3FS_MOUNT"])
def test_retired_agent_variables_warn_with_replacement(name: str) -> None:
    loaded = load(None, env={f"SBPS_MARSHAL_{name}": "x"})
    (warning,) = loaded.warnings
    assert "no longer used; replaced by" in warning


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ('[target]\nbackend = "iet"\n', "target.backend", "one of lio, tgt"),
    ('[reconcile]\ninterval = "soon"\n', "reconcile.interval", "a duration"),
    ("[target]\nlun_max = 20000\n", "target.lun_max", "at most 16383"),
    ("[target]\nlun_min = 0\n", "target.lun_min", "at least 1"),
    ("[stage]\nconcurrency = \"two\"\n", "stage.concurrency", "a whole number"),
    ("[s3]\nbuckit = \"x\"\n", "s3.buckit", "did you mean 'bucket'"),
    ("[dns]\ntsig_key = \"c2VjcmV0\"\n", "dns.tsig_key", "use tsig_key_file"),
    ("[nodes]\nhostname = \"w1\"\n", "nodes", "did you mean 'node'"),
    ('[target]\naccess = "acl"\nlun_max = 300\n', "target.lun_max", "at most 255"),
    ('[catalog]\nauth = "token-file"\n', "catalog.token_file", "required"),
    ('[dns]\nmode = "rfc2136"\n', "dns.tsig_key_file", "required"),
])
def test_bad_values_name_key_value_and_allowed(tmp_path: Path, text: str, key: str,
                                                fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text), env={})
    assert err.value.key == key
    assert fragment in str(err.value)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "marshal.toml"
    path.write_bytes(b"[node]\nhostname = \"w\xff\"\n")
    with pytest.raises(ConfigError, match="not valid UTF-8") as err:
        load(str(path), env={})
    assert err.value.key == "(file)"


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load(None, env={"SBPS_MARSHAL_SCAN_FREQUENCY": "often"})
    assert err.value.key == "reconcile.interval"
    assert "SBPS_MARSHAL_SCAN_FREQUENCY" in str(err.value)


def test_units() -> None:
    assert parse_duration("1.5h") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_size("16MiB") == 16 * 2**20
    assert parse_size("2G") == 2 * 10**9
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def test_config_is_frozen() -> None:
    cfg = load(None, env={}).config
    with pytest.raises(AttributeError):
        cfg.s3.bucket = "x"  # type: ignore[misc]


def test_credentials_in_urls_are_redacted() -> None:
    cfg = load(None, env={"SBPS_MARSHAL_S3_ENDPOINT": "https://key:sekrit@rgw.example"})
    assert "sekrit" not in json.dumps(as_dict(cfg))


def test_example_file_is_generated_from_the_definition() -> None:
    assert (ROOT / "contrib" / "marshal.example.toml").read_text() == example()


def test_example_file_uncommented_is_valid(tmp_path: Path) -> None:
    body = "\n".join(line[1:] if re.match(r"#[a-z_0-9]+ = ", line) else line
                      for line in example().splitlines())
    assert load(write(tmp_path, body), env={}).config == load(None, env={}).config


def test_sbpsctl_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[reconcile]\ninterval = 60\n")
    assert sbpsctl(["config", "check", good]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[stage]\nverify = "sometimes"\n')
    assert sbpsctl(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "stage.verify" in err and "'sometimes'" in err and "strict, best-effort" in err


def test_unknown_key_never_repeats_its_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[dns]\ntsig_key = "c2VjcmV0"\n')
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert "c2VjcmV0" not in str(err.value) and "not shown" not in str(err.value)
    assert str(err.value) == (f"dns.tsig_key: invalid (from file {path}): unknown key; "
                              "secrets are given as files: use tsig_key_file")


def test_a_bad_value_names_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[stage]\nverify = "sometimes"\n')
    with pytest.raises(ConfigError, match=f"from file {re.escape(path)}"):
        load(path, env={})


def test_every_error_of_a_file_is_reported(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[stage]\nverify = "sometimes"\nconcurrency = "two"\n'
                 '[s3]\nbuckit = "x"\n[nodes]\nx = 1\n')
    with pytest.raises(ConfigErrors) as err:
        load(path, env={"SBPS_MARSHAL_RECONCILE_INTERVAL": "often"})
    assert [e.key for e in err.value.errors] == [
        "stage.verify", "stage.concurrency", "s3.buckit", "nodes", "reconcile.interval"]
    assert sbpsctl(["config", "check", path]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{path}: invalid: ") for line in lines)
    assert sbpsctl(["config", "check", "--json", path]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False and len(doc["errors"]) == 4


def test_check_of_an_absent_file_fails_however_it_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    absent = str(tmp_path / "marshal.toml")
    assert sbpsctl(["config", "check", absent]) == 2
    assert f"{absent}: invalid: --config" in capsys.readouterr().err
    monkeypatch.setattr("sbps.cli.config_cmd.DEFAULT_PATH", absent)
    assert sbpsctl(["config", "check"]) == 2
    err = capsys.readouterr().err
    assert absent in err and "no such file" in err and "valid" not in err.replace("invalid", "")


def test_sbpsctl_config_show_env_alias(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("SBPS_MARSHAL_SCAN_FREQUENCY", "77")
    path = write(tmp_path, "")
    assert sbpsctl(["--config", path, "config", "show", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["reconcile.interval"]["value"] == 77
    assert rows["reconcile.interval"]["source"] == "env SBPS_MARSHAL_SCAN_FREQUENCY"
