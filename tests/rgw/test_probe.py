"""The conditional-write probe on Ceph RGW: RGW passes it directly, and fails it behind a
proxy that strips If-None-Match/If-Match (re-signing the requests, as RGW checks SigV4)."""

from __future__ import annotations

from tests.integration.test_claims_probe import (  # noqa: F401 (collected by pytest)
    test_a_conforming_store_passes_and_the_probe_leaves_nothing,
    test_a_store_that_ignores_conditions_is_refused_and_no_claim_is_written,
    test_the_probe_detects_each_ignored_condition,
    test_the_verdict_is_a_metric,
)
