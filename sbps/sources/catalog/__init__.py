"""The catalog: which images to project, from IMS records, manifests and PE/ objects.

Owns the IMS client, tolerant parsing of records and manifests into sbps.core.model, the label
rule and typed problems. Must not stage, export or decide removals.

Modules: ``auth`` (IMS bearer tokens), ``ims`` (async IMS client), ``parse`` (tolerant
record and manifest parsing), ``rules`` (label and PE registration rules), ``rootfs`` and
``pe`` (per-image caches), ``snapshot`` (the pass result), ``catalog`` (the pass).
"""

from sbps.sources.catalog.auth import NoAuth, TokenCommand, TokenFile, TokenProvider, make_auth
from sbps.sources.catalog.catalog import Catalog
from sbps.sources.catalog.ims import ImsClient, ImsRefused, ImsUnavailable
from sbps.sources.catalog.snapshot import CatalogSnapshot, image_key

__all__ = [
    "Catalog", "CatalogSnapshot", "ImsClient", "ImsRefused", "ImsUnavailable", "NoAuth",
    "TokenCommand", "TokenFile", "TokenProvider", "image_key", "make_auth",
]
