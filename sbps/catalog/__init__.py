"""The catalog: which images to project, from IMS records, manifests and PE/ objects.

Owns the IMS client, tolerant parsing of records and manifests into sbps.model, the label
rule and typed problems. Must not stage, export or decide removals.
"""
