"""The README: the set-up commands stay first, the configuration reference is the one the
definition generates, and its links to documents point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sbps.cli import main
from sbps.cli.config_cmd import BEGIN, END, replace_reference
from sbps.config.render import reference_markdown

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_commands_come_first() -> None:
    lines = README.read_text().splitlines()
    assert lines[0].startswith("# sbps")
    first_block = lines[lines.index("```sh") + 1:]
    assert lines.index("```sh") <= 3 and first_block[0].startswith("make test")


def test_configuration_reference_is_generated() -> None:
    """Regenerate with ``sbpsctl config reference --update README.md``."""
    text = README.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section == "\n" + reference_markdown()


def test_reference_names_every_key_with_default_and_env() -> None:
    from sbps.config.load import keys
    ref = reference_markdown()
    for k in keys():
        assert f"| `{k.dotted}` |" in ref and f"`{k.env}`" in ref


def test_no_variable_is_listed_as_its_own_alias() -> None:
    for row in reference_markdown().splitlines()[2:]:
        names = re.findall(r"`(SBPS_MARSHAL_[A-Z0-9_]+)`", row)
        assert len(names) == len(set(names)), row


def test_local_links_exist() -> None:
    for doc in (README, ROOT / "docs/runbook.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            path = (doc.parent / target).resolve().relative_to(ROOT).as_posix()
            assert (ROOT / path).exists(), (doc.name, target)


def test_replace_reference() -> None:
    text = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    assert replace_reference(text, "| new |\n") == f"intro\n{BEGIN}\n| new |\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        replace_reference("no markers here", "x")


def test_cli_updates_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"# t\n{BEGIN}\nstale\n{END}\n")
    assert main(["config", "reference", "--update", str(doc)]) == 0
    assert doc.read_text() == f"# t\n{BEGIN}\n{reference_markdown()}{END}\n"
    assert main(["config", "reference", "--update", str(doc)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()
    (tmp_path / "bare.md").write_text("nothing")
    assert main(["config", "reference", "--update", str(tmp_path / "bare.md")]) == 1
