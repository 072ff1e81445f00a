"""The packaged environment file documents every field-agent variable, and each of its
examples, once uncommented, is a valid setting that reaches the key it claims."""

from __future__ import annotations

from pathlib import Path

from sbps.config import load
from sbps.config.load import keys
from sbps.config.schema import ENV_PREFIX

SYSCONFIG = Path(__file__).resolve().parents[2] / "contrib/rpm/sbps-marshal.sysconfig"


def examples() -> dict[str, str]:
    out = {}
    for line in SYSCONFIG.read_text().splitlines():
        if line.startswith(f"#{ENV_PREFIX}") and "=" in line:
            name, _, value = line[1:].partition("=")
            out[name] = value
    return out


def test_every_field_agent_variable_is_documented() -> None:
    aliases = {ENV_PREFIX + k.alias for k in keys() if k.alias}
    assert aliases and aliases <= set(examples()), sorted(aliases - set(examples()))


def test_no_active_setting_and_no_inline_comment() -> None:
    """Installed as is, the file changes nothing; systemd keeps a trailing "# ..." as part
    of the value, so no example may carry one."""
    lines = SYSCONFIG.read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in lines)
    assert all("#" not in value and " " not in value for value in examples().values())


def test_uncommented_examples_load_into_their_keys() -> None:
    env = examples()
    loaded = load(None, env=env)
    by_env = {k.env: k.dotted for k in keys()} | {ENV_PREFIX + k.alias: k.dotted
                                                   for k in keys() if k.alias}
    for name in env:
        assert loaded.sources[by_env[name]] == f"env {name}", name
    assert loaded.config.reconcile.interval == 180
    assert loaded.config.stage.max_bytes == 200 * 10**9
    assert not loaded.warnings, loaded.warnings
