"""LUN id claims: the shared registry in S3 and its local journal.

Owns the agreement on LUN ids between workers (claim objects created with If-None-Match,
holders joined and left with If-Match) and the quarantine of freed ids. Must not touch the
target.
"""
