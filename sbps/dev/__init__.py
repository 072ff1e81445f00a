"""Development only: the demo (``demo``), the development servers it starts on loopback
(``devstack``) and a userspace iSCSI initiator for read-backs (``initiator``). Used by
``sbpsctl demo`` and the tests; the daemon must never import this wing (import-linter
checks it).
"""
