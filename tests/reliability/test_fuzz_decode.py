"""Fuzzing with raw bytes through the real decoding paths: the IMS client's response
decoding (over HTTP, from a server answering the fuzzed bytes), the manifest parser (what
the catalog and the boot-parameters reader run on the bytes read from S3) and the claim
codec (claim and key-index objects under ``.sbps/``); and the tenant map file, the
Kubernetes node answer of the k8s-label gate (over HTTP) and a token command's output.

Inputs: random bytes, valid documents broken byte by byte, invalid UTF-8, nesting up to
100,000 levels, and documents up to each path's size limit (``fuzz_bytes``). Zero
crashes: each input is accepted or rejected with the path's typed error (an SbpsError with
a code; an InputError or Problem naming the field); RecursionError, MemoryError, KeyError
or any other exception is a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sbps.config import CatalogConfig, NodeConfig
from sbps.core.errors import ConfigError, InputError, SbpsError
from sbps.core.model import Problem
from sbps.publish.gate import K8sLabelGate
from sbps.sources.catalog.auth import NoAuth, select_token
from sbps.sources.catalog.ims import ImsClient
from sbps.sources.catalog.parse import parse_record
from sbps.sources.claims.codec import claim_from_bytes, index_from_bytes
from sbps.target.access.files import load_tenant_map
from tests.fixtures.raw_http import RawServer
from tests.reliability import fuzz_bytes as fb
from tests.reliability import fuzzing as fz
from tests.reliability.report import Figures
from tests.reliability.scale import Scale
from tests.reliability.test_fuzz import _problem, check_manifest

CLAIM_AT = "s3://boot-images/.sbps/luns/7"
INDEX_AT = "s3://boot-images/.sbps/keys/" + "0" * 56


def _typed(exc: SbpsError) -> bool:
    if not exc.code or exc.code == "error" or not str(exc):
        raise AssertionError(f"a rejection without a code: {exc!r}") from exc
    if isinstance(exc, InputError) and not exc.field:
        raise AssertionError(f"an InputError naming no field: {exc!r}") from exc
    return False


class _ServedPath:
    """A decoding path that reads the fuzzed bytes over HTTP from a RawServer; one event
    loop for the whole run. Subclasses say what reads them (``_read``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = RawServer()
        self.loop.run_until_complete(self.server.__aenter__())

    def check(self, body: bytes) -> bool:
        self.server.body = body
        try:
            return self.loop.run_until_complete(self._read())
        except SbpsError as exc:
            return _typed(exc)

    async def _read(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        self.loop.run_until_complete(self._close())
        self.loop.run_until_complete(self.server.__aexit__())
        self.loop.close()

    async def _close(self) -> None:
        """Release what ``_read`` holds open (nothing by default)."""


class ImsPath(_ServedPath):
    """``ImsClient.list_images`` (no retries), then each record through ``parse_record`` as
    the catalog does."""

    def __init__(self) -> None:
        super().__init__()
        cfg = CatalogConfig(api_gateway=self.server.url, ims_uri="v3/images", timeout=60.0)
        self.client = ImsClient(cfg, NoAuth(), retries=0)

    async def _read(self) -> bool:
        records = await self.client.list_images()
        for n, raw in enumerate(records):
            out = parse_record(raw, n, [])
            if isinstance(out, Problem):
                _problem(out)
        return True

    async def _close(self) -> None:
        await self.client.close()


def check_claim(body: bytes) -> bool:
    accepted = True
    for read, where in ((lambda: claim_from_bytes(body, CLAIM_AT, 7), CLAIM_AT),
                        (lambda: index_from_bytes(body, INDEX_AT), INDEX_AT)):
        try:
            read()
        except InputError as exc:
            if exc.obj != where:
                raise AssertionError(f"rejection names {exc.obj!r}, not {where}") from exc
            accepted = _typed(exc)
    return accepted


def check_tenant_map(body: bytes, path: str) -> bool:
    with open(path, "wb") as fh:
        fh.write(body)
    try:
        load_tenant_map(path)
    except ConfigError as exc:  # what the access policy reports (the last good map is kept)
        if not exc.key or not str(exc):
            raise AssertionError(f"a rejection naming no key: {exc!r}") from exc
        return False
    return True


def check_token(body: bytes) -> bool:
    try:
        select_token(body.decode("utf-8", "replace"))
    except ValueError as exc:  # TokenCommand turns it into token_unavailable
        if not str(exc):
            raise AssertionError("a rejection without a message") from exc
        return False
    return True


class K8sPath(_ServedPath):
    """The k8s-label gate reading its node answer."""

    def __init__(self, token_file: str) -> None:
        super().__init__()
        cfg = NodeConfig(gate="k8s-label", k8s_api=self.server.url, k8s_token_file=token_file)
        self.gate = K8sLabelGate(cfg, "ncn-w001")

    async def _read(self) -> bool:
        await self.gate.is_open()
        return True


def _row(figures: Callable[[str], Figures], kind: fb.Kind, tally: fz.Tally) -> Figures:
    fig = figures(f"fuzz: {kind.name}")
    fig.inputs, fig.crashes = tally.inputs, tally.crashes
    fig.notes.append(f"{tally.accepted} accepted, {tally.rejected} rejected with a typed "
                     f"error; nesting to {fb.MAX_DEPTH} levels, sizes to the limit of "
                     f"{kind.limit} bytes")
    fig.notes.extend(tally.examples)
    return fig


def _fuzz(kind: fb.Kind, check: Callable[[bytes], bool], scale: Scale,
          figures: Callable[[str], Figures]) -> None:
    tally = fz.run(fb.documents(kind), check, cases=scale.fuzz_cases, seed_value=scale.seed)
    _row(figures, kind, tally)
    assert tally.crashes == 0, tally.examples
    assert tally.inputs >= scale.fuzz_cases * 0.9
    assert tally.accepted > 0 and tally.rejected > 0


def test_fuzz_raw_ims_answers(scale: Scale, figures: Callable[[str], Figures]) -> None:
    ims = ImsPath()
    try:
        _fuzz(fb.IMS, ims.check, scale, figures)
    finally:
        ims.close()


def test_fuzz_raw_manifests(scale: Scale, figures: Callable[[str], Figures]) -> None:
    _fuzz(fb.MANIFEST, check_manifest, scale, figures)


def test_fuzz_raw_claim_objects(scale: Scale, figures: Callable[[str], Figures]) -> None:
    _fuzz(fb.CLAIMS, check_claim, scale, figures)


def test_fuzz_raw_tenant_maps(scale: Scale, figures: Callable[[str], Figures],
                              tmp_path: Path) -> None:
    path = str(tmp_path / "tenants.json")
    _fuzz(fb.TENANT_MAP, lambda body: check_tenant_map(body, path), scale, figures)


def test_fuzz_raw_kubernetes_answers(scale: Scale, figures: Callable[[str], Figures],
                                     tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("k8s-token\n")
    k8s = K8sPath(str(token))
    try:
        _fuzz(fb.K8S, k8s.check, scale, figures)
    finally:
        k8s.close()


def test_fuzz_raw_token_output(scale: Scale, figures: Callable[[str], Figures]) -> None:
    _fuzz(fb.TOKEN, check_token, scale, figures)


def test_documents_at_the_size_limits(figures: Callable[[str], Figures],
                                      tmp_path: Path) -> None:
    """Each path at exactly its limit and one byte over: typed answers, never a crash."""
    fig = figures("documents at the size limits (IMS answer, manifest, claim object, tenant "
                  "map, Kubernetes answer, token output)")
    ims = ImsPath()
    token = tmp_path / "token"
    token.write_text("k8s-token\n")
    k8s = K8sPath(str(token))
    tenants = str(tmp_path / "tenants.json")
    try:
        for kind, check in ((fb.IMS, ims.check), (fb.MANIFEST, check_manifest),
                            (fb.CLAIMS, check_claim),
                            (fb.TENANT_MAP, lambda b: check_tenant_map(b, tenants)),
                            (fb.K8S, k8s.check), (fb.TOKEN, check_token)):
            for what, body in fb.boundary(kind):
                fig.inputs += 1
                try:
                    verdict = "accepted" if check(body) else "rejected"
                except Exception as exc:  # counting crashes is the point
                    fig.crashes += 1
                    verdict = f"CRASH {type(exc).__name__}: {str(exc)[:120]}"
                fig.notes.append(f"{kind.name.split(' (')[0]}, {what}: {verdict}")
    finally:
        ims.close()
        k8s.close()
    assert fig.crashes == 0, fig.notes
