"""How a worker shows itself to clients and admins.

Owns the node gate (``gate``: whether to serve), the DNS registrars (``dns``), the HTTP API
and its limits (``http``), Prometheus metrics (``metrics``) and boot parameters (``boot``:
the ``root=sbps-s3:...`` format, its output forms, and reading them for sbpsctl). Reads the
reconciler's status snapshot; must not change the target.
"""
