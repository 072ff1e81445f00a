"""Typed choices: every choice key holds its enum member, whatever gave the text."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import pytest

from sbps.config import Config, TargetConfig, keys, load
from sbps.config.choices import AccessMode, BackendKind, DnsMode, LogLevel
from sbps.config.render import as_dict
from sbps.core.errors import ConfigError


def choice_keys() -> list[str]:
    return [k.dotted for k in keys() if k.choices]


def test_every_key_with_choices_is_an_enum_and_nothing_else_is() -> None:
    for k in keys():
        is_enum = isinstance(k.type, type) and issubclass(k.type, enum.Enum)
        assert is_enum == bool(k.choices), k.dotted
        if is_enum:
            assert k.choices == tuple(m.value for m in k.type), k.dotted
            assert isinstance(k.default, k.type), k.dotted
    assert len(choice_keys()) == 15


def test_file_environment_and_flags_give_members(tmp_path: Path) -> None:
    path = tmp_path / "marshal.toml"
    path.write_text('[target]\nbackend = "tgt"\ninitiators = ["10.0.0.0/24"]\n'
                    'access = "acl"\n')
    loaded = load(str(path), env={"SBPS_MARSHAL_DNS_MODE": "pdns",
                                  "SBPS_MARSHAL_DNS_PDNS_API_KEY_FILE": "/k"},
                  flags={"log.level": "debug"})
    cfg = loaded.config
    assert cfg.target.backend is BackendKind.TGT
    assert cfg.target.access is AccessMode.ACL
    assert cfg.dns.mode is DnsMode.PDNS
    assert cfg.log.level is LogLevel.DEBUG
    for dotted in choice_keys():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        assert type(value) is not str, dotted
    # What people read and what /debug/config serves is the text, as before.
    assert json.loads(json.dumps(as_dict(loaded)))["target"]["backend"] == "tgt"


def test_a_section_built_by_hand_with_text_holds_the_member() -> None:
    t = TargetConfig(backend="tgt", access="acl")  # type: ignore[arg-type]
    assert t.backend is BackendKind.TGT and t.access is AccessMode.ACL
    assert dataclasses.replace(t, access="open").access is AccessMode.OPEN  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TargetConfig(backend="iet")  # type: ignore[arg-type]


def test_cross_checks_run_on_the_typed_configuration(tmp_path: Path) -> None:
    path = tmp_path / "marshal.toml"
    path.write_text('[target]\nbackend = "tgt"\naccess = "acl"\n')
    with pytest.raises(ConfigError) as err:
        load(str(path), env={})
    assert err.value.key == "target.initiators"
    path.write_text('[target]\nbackend = "lio"\naccess = "acl"\ninitiators = ["iqn.x"]\n'
                    "lun_max = 300\n")
    with pytest.raises(ConfigError) as err:
        load(str(path), env={})
    assert (err.value.key, err.value.value) == ("target.lun_max", 300)
    assert isinstance(load(None, env={}).config, Config)
