"""Kernel boot parameters: generate and parse root=sbps-s3:...

Owns the parameter grammar compatible with BOS and the field clients. Pure; must not do
I/O.
"""
