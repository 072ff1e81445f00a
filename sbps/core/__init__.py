"""The core: what every wing shares and that imports nothing else of sbps but itself.

Owns the error hierarchy (``errors``), the frozen data of images, claims and the cache
(``model``), of the target (``target_state``), the actions plan() emits (``actions``),
identities (``identity``), the interfaces the reconciler needs from its components
(``interfaces``), bounded decoding of outside documents (``decode``) and where rejected ones
are reported (``rejections``), and log formatting (``logs``). Must not do I/O beyond
logging, and must not import another wing.
"""
