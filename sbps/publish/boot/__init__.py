"""Boot parameters: ``params`` (the ``root=sbps-s3:...`` generator and parser), ``formats``
(cmdline, BOS, bootprep and JSON forms) and ``source`` (reading an IMS record's boot
artifacts for ``sbpsctl bootparams``, confined to the configured buckets). Must not be a
second catalog: the daemon serves boot parameters from its snapshot only.
"""
