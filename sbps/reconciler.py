"""The reconcile loop: triggers, passes, image lifecycle and the status snapshot.

Owns scheduling of passes (interval, manual, notification; coalesced), the lifecycle and
backoff of images, and the atomically replaced status snapshot.
"""
