"""The LIO backend's integration suite on the real kernel: pytest runs inside the guest and
its junit XML is read back here. The lane fails if the guest ran no test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.realkernel.conftest import GuestReport

# Software emulation: the guest build and boot land in the first test's setup.
pytestmark = pytest.mark.timeout(1800)

SHARED = ("test_a_read_sees_changes_behind_its_back",
          "test_converge_from_empty_then_zero_writes",
          "test_foreign_objects_survive_and_are_refused",
          "test_injected_eio_fails_only_that_action",
          "test_saveconfig_reuses_dumps_and_equals_a_full_dump")


def test_lio_backend_suite_passes_on_the_real_kernel(
        guest_pytest: Callable[..., GuestReport]) -> None:
    report = guest_pytest("tests/realkernel/guest/guest_lio.py", "guest_lio")
    assert report.tests > 0, report.output
    assert not report.failed and not report.skipped, report.summary()
    # The emulation's test bodies ran with both rtslib versions.
    for name in SHARED:
        for kind in ("debian", "pypi"):
            assert any(p.endswith(f"::{name}[{kind}]") for p in report.passed), \
                (name, kind, report.summary())
