"""What the marshal reads from the image catalog and the shared bucket.

Owns the S3 client (``s3``), the catalog of images to project (``catalog``: IMS records,
manifests, PE objects), the verified local cache of their squashfs files (``stager``) and
the LUN id claims every worker agrees on (``claims``). Must not touch the target, DNS or
the HTTP API; the reconciler decides what to do with what these return.
"""
