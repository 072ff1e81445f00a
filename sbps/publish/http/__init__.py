"""The HTTP API: catalog for clients, metrics, admin endpoints.

Owns the aiohttp application and its routes. Reads the reconciler's status snapshot;
never imports a target backend. The daemon wires it with ``make_app(HttpDeps(...))`` and
``run_http`` (or ``start_http``), and runs ``StatusSource.follow(reconciler)`` so long
polls wake after each pass.
"""
