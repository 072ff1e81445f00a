"""The rgw lane: every ``s3_*`` fixture of this directory talks to a real Ceph RADOS Gateway.

Overriding ``s3_server`` here points ``s3_client``, ``s3_bucket``, ``s3_credential_file``,
``sbps_s3`` and every fixture built on them (image uploads, workers, fault proxies) at the
session's RGW, so test bodies written for moto run unchanged on the server sites run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sbps.sources.s3 import S3
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.rgw import summary
from tests.fixtures.servers import S3Server
from tests.integration.test_stager import make_s3


@pytest.fixture(scope="session")
def s3_server(rgw_server: S3Server) -> S3Server:
    return rgw_server


@pytest.fixture
def s3(s3_server: S3Server, s3_credential_file: Path) -> S3:
    """sbps's client, as tests/integration/test_stager.py makes it (5 s timeouts)."""
    return make_s3(s3_server.endpoint, s3_credential_file)


@pytest.fixture
def proxy(fault_proxy: Callable[..., FaultProxy], s3_server: S3Server) -> FaultProxy:
    """The fault proxy in front of RGW; it re-signs requests whose headers it strips."""
    return fault_proxy(s3_server.endpoint,
                       resign=(s3_server.access_key, s3_server.secret_key, "us-east-1"))


@pytest.fixture
def proxied_s3(proxy: FaultProxy, s3_credential_file: Path) -> S3:
    return make_s3(proxy.endpoint, s3_credential_file)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    line = summary(config)
    if line:
        terminalreporter.section("rgw")
        terminalreporter.write_line(line)
