"""The reconcile loop: from what is wanted and what is there to what must change.

Owns the loop (``loop``: triggers, passes, the status snapshot), the admin commands
(``commands``), the desired images per pass (``desired``), the plan input (``gather``),
the pure planner (``plan``, ``plan_access``), the executor of a plan (``apply``) and its
hands (``effects``: the backend thread, the I/O pool), staging in the background
(``staging``), image lifecycles (``lifecycle``), adoption of the field agent's LUNs
(``adoption``), whether this worker serves (``serving``), the snapshot (``status``) and how
bugs in a pass are reported (``failures``). Components are reached through
``sbps.core.interfaces`` and the target backend protocol; this wing never builds them
(``sbps.daemon.compose`` does).
"""
