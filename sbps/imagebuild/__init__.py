"""Image build: squashfs creation and upload laid out as IMS lays images out in S3.

Owns turning a root tree into a squashfs file and publishing it (with kernel, initrd and
boot parameters) under ``<bucket>/<image id>/`` with ``manifest.json`` written last. Must
not talk to IMS or to the target: registering the record is the caller's business.
"""
