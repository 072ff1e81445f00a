"""Property-based fuzzing of every input the marshal parses: IMS records, manifests, boot
parameter strings and configuration files (TOML text, non-UTF-8 bytes included).

Zero crashes: each input is accepted or rejected with the typed result the parser promises
(a Problem naming the field, an InputError naming the field, a ConfigError naming the key);
anything else, including a rejection that names no field, counts as a crash. What is accepted
cannot reach outside the cache: ids, names and object keys are checked for traversal.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from sbps.config import load
from sbps.config.load import keys
from sbps.config.render import toml_value
from sbps.core.errors import ConfigError, InputError
from sbps.core.model import ImageRecord, Manifest, Problem
from sbps.publish.boot import params as bootparams
from sbps.sources.catalog.parse import parse_manifest, parse_record
from sbps.sources.s3 import check_key
from tests.reliability import fuzzing as fz
from tests.reliability.report import Figures, Report
from tests.reliability.scale import Scale

BOOT_FIELDS = {"provider", "path", "etag", "transport", "schema", "iqn_prefix", "srv_name",
               "timeout", "ramroot", "root"}


def _problem(p: Problem) -> bool:
    if not (p.obj and p.field and p.code):
        raise AssertionError(f"a rejection that names no object or field: {p}")
    return False


def check_record(raw: Any) -> bool:
    out = parse_record(raw, 0, [])
    if isinstance(out, Problem):
        return _problem(out)
    assert isinstance(out, ImageRecord)
    if "/" in out.ims_id or out.ims_id.startswith(".") or len(out.ims_id) > 128:
        raise AssertionError(f"unsafe id accepted: {out.ims_id!r}")
    if out.manifest is not None:
        check_key(out.manifest.key)
    return True


def check_manifest(body: bytes) -> bool:
    out = parse_manifest("image-1", body, [])
    if isinstance(out, Problem):
        return _problem(out)
    assert isinstance(out, Manifest)
    for art in out.artifacts:
        check_key(art.url.key)
    return True


def check_boot(text: str) -> bool:
    try:
        params = bootparams.parse(text)
    except InputError as exc:
        if exc.field not in BOOT_FIELDS:
            raise AssertionError(f"rejection names no known field: {exc.field!r}") from exc
        return False
    again = bootparams.parse(bootparams.generate(params))
    if again != params:
        raise AssertionError(f"round trip changed {params} into {again}")
    return True


def _config_text() -> st.SearchStrategy[bytes]:
    known = [(k.section, k.name) for k in keys()]
    value = st.one_of(
        st.booleans(), st.integers(-2**70, 2**70), st.floats(), fz.hostile_text(),
        st.sampled_from(("1s", "0.5s", "-1", "8MiB", "0", "lio", "tgt", "strict", "acl",
                         "claims", "rfc2136", "127.0.0.1:3260", "http://127.0.0.1:1")),
        st.lists(st.one_of(fz.hostile_text(), st.integers()), max_size=3).map(tuple))
    entry = st.one_of(st.sampled_from(known),
                      st.tuples(st.sampled_from([s for s, _ in known] + ["bogus"]),
                                fz.hostile_text(12)))

    def render(pairs: list[tuple[tuple[str, str], Any]], junk: str) -> bytes:
        sections: dict[str, list[str]] = {}
        for (section, name), v in pairs:
            sections.setdefault(section, []).append(f"{json.dumps(name)} = {toml_value(v)}")
        text = "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())
        return (text + junk).encode("utf-8", "surrogatepass")

    return st.one_of(st.builds(render, st.lists(st.tuples(entry, value), max_size=8),
                               st.sampled_from(("", "\n[node\n", "x = = 1\n", "[[node]]\n"))),
                     st.binary(max_size=120))


def _check_config(directory: str) -> Callable[[bytes], bool]:
    path = os.path.join(directory, "marshal.toml")

    def check(body: bytes) -> bool:
        with open(path, "wb") as fh:
            fh.write(body)
        try:
            load(path, env={})
        except ConfigError as exc:
            if not exc.key:
                raise AssertionError(f"ConfigError without a key: {exc}") from exc
            return False
        return True

    return check


def _row(figures: Callable[[str], Figures], name: str, tally: fz.Tally) -> Figures:
    fig = figures(name)
    fig.inputs, fig.crashes = tally.inputs, tally.crashes
    fig.notes.append(f"{tally.accepted} accepted, {tally.rejected} rejected with a typed "
                     "error naming the field")
    fig.notes.extend(tally.examples)
    return fig


def test_fuzz_ims_records(scale: Scale, figures: Callable[[str], Figures]) -> None:
    tally = fz.run(fz.ims_records(), check_record, cases=scale.fuzz_cases,
                   seed_value=scale.seed)
    _row(figures, "fuzz: IMS records", tally)
    assert tally.crashes == 0, tally.examples
    assert tally.inputs >= scale.fuzz_cases * 0.9


def test_fuzz_manifests(scale: Scale, figures: Callable[[str], Figures]) -> None:
    tally = fz.run(fz.manifests(), check_manifest, cases=scale.fuzz_cases,
                   seed_value=scale.seed)
    _row(figures, "fuzz: manifests (JSON and raw bytes)", tally)
    assert tally.crashes == 0, tally.examples
    assert tally.inputs >= scale.fuzz_cases * 0.9


def test_fuzz_boot_parameters(scale: Scale, figures: Callable[[str], Figures]) -> None:
    tally = fz.run(fz.boot_strings(), check_boot, cases=scale.fuzz_cases,
                   seed_value=scale.seed)
    _row(figures, "fuzz: boot parameter strings", tally)
    assert tally.crashes == 0, tally.examples
    assert tally.accepted > 0, "the generator must also produce valid parameters"


def test_fuzz_config_files(scale: Scale, figures: Callable[[str], Figures]) -> None:
    with tempfile.TemporaryDirectory() as d:
        tally = fz.run(_config_text(), _check_config(d), cases=scale.fuzz_cases,
                       seed_value=scale.seed)
    _row(figures, "fuzz: configuration files (TOML text, bytes)", tally)
    assert tally.crashes == 0, tally.examples
    assert tally.accepted > 0 and tally.rejected > 0


def test_fuzz_crash_counter_fires(scale: Scale, reliability_report: Report) -> None:
    """Negative control: a parser that raises an untyped error is counted as crashing."""
    tally = fz.run(st.binary(min_size=1, max_size=20), lambda b: bool(b.decode("utf-8")),
                   cases=min(scale.fuzz_cases, 200), seed_value=scale.seed)
    reliability_report.control("crashes (fuzz harness)", "bytes.decode('utf-8') fed random "
                               "bytes (raises UnicodeDecodeError, an untyped rejection)",
                               tally.crashes)
    assert tally.crashes > 0
