"""The HTTP API: catalog for clients, metrics, admin endpoints.

Owns the aiohttp application and its routes. Reads the reconciler's status snapshot;
never imports a target backend.
"""
