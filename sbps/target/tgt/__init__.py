"""The tgt target backend (Debian's userspace tgtd): ``backend.TgtBackend``.

Owns the mapping of sbps's target model onto tgt: ``tgtadm`` and the management socket
(``mgmt``, for requests that carry a secret), tgt's listings (``mapping``), ACLs and CHAP
(``access``) and per-LUN read counters from the LUN's I/O threads (``iostat``). Must not
touch other targets, and must not be imported by the HTTP layer.
"""
