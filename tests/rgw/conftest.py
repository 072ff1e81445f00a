"""The rgw lane: every ``s3_*`` fixture of this directory talks to a real Ceph RADOS Gateway.

Overriding ``s3_server`` here points ``s3_client``, ``s3_bucket``, ``s3_credential_file``,
``sbps_s3`` and every fixture built on them (image uploads, workers, fault proxies) at the
session's RGW, so test bodies written for moto run unchanged on the server sites run.
"""

from __future__ import annotations

import pytest

from tests.fixtures.rgw import summary
from tests.fixtures.servers import S3Server


@pytest.fixture(scope="session")
def s3_server(rgw_server: S3Server) -> S3Server:
    return rgw_server


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    line = summary(config)
    if line:
        terminalreporter.section("rgw")
        terminalreporter.write_line(line)
