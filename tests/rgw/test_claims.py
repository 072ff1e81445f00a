"""The claim registry on a real RGW: the moto test bodies of tests/integration, unchanged.

The race (eight processes, the same identities in different orders, identical maps),
agreement between workers and rebuilds, take-over after quarantine, release, PE re-uploads
and the S3 verification all rest on RGW's conditional writes; these run them there.
"""

from __future__ import annotations

from tests.integration.test_claims import (  # noqa: F401 (collected by pytest)
    test_claim_is_idempotent_and_a_steady_pass_makes_no_request,
    test_crash_before_the_index_is_recovered,
    test_pe_reupload_never_gives_one_wwid_two_contents,
    test_quarantine_holds_and_one_taker_wins,
    test_release_id_refuses_held_claims_unless_forced,
    test_released_identity_rejoins_its_own_id,
    test_two_workers_in_different_orders_agree,
    test_verify_compares_exported_luns_with_s3,
    test_wiping_the_state_dir_reproduces_the_map,
    worker,
)
from tests.integration.test_claims_processes import (  # noqa: F401
    test_eight_processes_agree_on_one_owner_per_id,
)
