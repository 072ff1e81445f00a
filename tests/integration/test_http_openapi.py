"""Live responses of the HTTP API conform to the OpenAPI document shipped in the package.

schemathesis generates requests for every operation of ``sbps/publish/http/openapi.yaml`` and
checks each live response (status code, content type, headers, body schema, no server
error). The server runs on a real socket in a thread of its own, because schemathesis
calls it synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from sbps.reconcile.commands import ImageAction
from tests.fixtures.http_api import ApiServer, make_status, pe, rootfs, start_api

SPEC = Path(str(resources.files("sbps.publish.http").joinpath("openapi.yaml")))
schema = schemathesis.openapi.from_path(SPEC)


class ThreadedApi:
    """The API server with its own event loop in a thread; stopped by ``close()``."""

    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-under-test")
        self.thread.start()
        status = make_status([(rootfs("aaaa-1"), 11), (pe("CPE-base"), 12)],
                             retiring=[(rootfs("dddd-4"), 14)], failed=[rootfs("eeee-5")],
                             read_bytes=2**20, commands=10)
        self.api: ApiServer = asyncio.run_coroutine_threadsafe(
            start_api(status, state_dir, set_log_level=lambda level: None),
            self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ThreadedApi(tmp_path_factory.mktemp("state"))
    yield server.api
    server.close()


def test_the_document_is_valid_openapi() -> None:
    validate(yaml.safe_load(SPEC.read_text()))


def test_the_image_actions_are_the_commands() -> None:
    """The route's actions in the document are exactly the reconciler's image commands."""
    doc = yaml.safe_load(SPEC.read_text())
    [param] = [p for p in doc["paths"]["/v1/images/{key}/{action}"]["post"]["parameters"]
               if p["name"] == "action"]
    assert param["schema"]["enum"] == [a.value for a in ImageAction]


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_live_responses_conform(case: schemathesis.Case, live: ApiServer) -> None:
    headers = {"Authorization": f"Bearer {live.token}"}
    # OpenAPI cannot say that ?wait requires If-None-Match, so a request the document
    # allows may be refused with 400; and the API ignores unknown query parameters (as
    # HTTP servers do, so cache-busting clients keep working), which schemathesis counts
    # as accepting invalid data. Those two checks do not apply; the parameter checks are
    # covered by test_http_api.py.
    case.call_and_validate(base_url=live.url, headers=headers, timeout=30,
                           excluded_checks=[positive_data_acceptance,
                                            negative_data_rejection])
