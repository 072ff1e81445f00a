"""``sbps-marshal``: the process. ``main`` (arguments, signals, sd_notify, shutdown),
``compose`` (the one composition root: builds every component once and wires them),
``supervisor`` (named, watched tasks), ``sdnotify`` and ``instance`` (one marshal per state
directory). Must not hold behaviour of the components it wires.
"""
