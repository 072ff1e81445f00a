"""The LIO target backend (rtslib-fb and configfs): ``backend.LioBackend``.

Owns the mapping of sbps's target model onto LIO's configfs tree: reading it (``tree``,
``read``), writing backstores and LUNs (``objects``), ACLs (``acl``), saveconfig.json
(``save``) and the rtslib settings (``plumbing``). Must not touch targets or objects sbps
does not own, and must not be imported by the HTTP layer.
"""
