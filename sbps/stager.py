"""Staging: verified copies of S3 objects in the local cache.

Owns downloads, verification (size, MD5, multipart ETag), the atomic write protocol, the
cache budget and eviction. Must not touch the target or decide what is desired.
"""
