"""Bucket confinement (issue 20, items 2 and 3): every link, of every kind, must be in
``s3.bucket`` or ``s3.allowed_buckets``; the configuration key is validated."""

from __future__ import annotations

import pytest

from sbps.config import load
from sbps.core.errors import ConfigError
from sbps.core.model import Artifact, ArtifactType, Manifest, S3Url
from sbps.sources.catalog.rules import foreign_links
from sbps.sources.s3 import ForeignBucket, allowed_buckets, confine

OURS = "boot-images"
ALLOWED = frozenset({OURS})


def manifest(**buckets: str) -> Manifest:
    """A manifest with one artifact of each kind; ``buckets`` moves one kind elsewhere."""
    arts = tuple(Artifact(S3Url(buckets.get(t.name.lower(), OURS), f"img/{t.name.lower()}"),
                          "0" * 32, None, t.value) for t in ArtifactType)
    return Manifest("1.0", None, arts)


def test_confine_accepts_the_bucket_and_refuses_any_other() -> None:
    url = S3Url(OURS, "img/manifest.json")
    assert confine(url, ALLOWED, "img", "link.path") is url
    with pytest.raises(ForeignBucket) as info:
        confine(S3Url("other-bucket", "secret"), ALLOWED, "img", "link.path")
    err = info.value
    assert (err.code, err.obj, err.field) == ("foreign_bucket", "img", "link.path")
    assert "other-bucket" in err.reason and "s3.allowed_buckets" in err.reason
    # Not a prefix match: a look-alike bucket is another bucket.
    with pytest.raises(ForeignBucket):
        confine(S3Url(OURS + "-x", "k"), ALLOWED, "img", "link.path")


def test_every_artifact_kind_in_the_bucket_passes() -> None:
    assert foreign_links("img", manifest(), ALLOWED) is None


@pytest.mark.parametrize("kind", [t.name.lower() for t in ArtifactType])
def test_each_artifact_kind_is_confined(kind: str) -> None:
    problem = foreign_links("img", manifest(**{kind: "other-bucket"}), ALLOWED)
    assert problem is not None
    assert (problem.obj, problem.code) == ("img", "foreign_bucket")
    assert problem.field == f"manifest.artifacts[{kind}].link.path"
    # The admin can name the other bucket explicitly.
    assert foreign_links("img", manifest(**{kind: "other-bucket"}),
                         ALLOWED | {"other-bucket"}) is None


def test_allowed_buckets_default_to_the_bucket_alone() -> None:
    cfg = load(None, env={}).config
    assert allowed_buckets(cfg.s3) == {cfg.s3.bucket}
    cfg = load(None, env={"SBPS_MARSHAL_S3_ALLOWED_BUCKETS": "site-images, old.images"}).config
    assert cfg.s3.allowed_buckets == ("site-images", "old.images")
    assert allowed_buckets(cfg.s3) == {cfg.s3.bucket, "site-images", "old.images"}


@pytest.mark.parametrize("bad", ["Upper", "a", "has/slash", "s3://x", "dots..dots", "-dash"])
def test_allowed_buckets_are_validated(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, env={"SBPS_MARSHAL_S3_ALLOWED_BUCKETS": f"ok-bucket,{bad}"})
    assert info.value.key == "s3.allowed_buckets"
