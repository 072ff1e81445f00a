"""Access control of the target: who may see and log in to which LUNs.

Owns the pure policy (``policy``: tenants, initiator patterns, allowed(), the ACL spec) and
its files (``files``: the tenant map and CHAP secrets, re-read on change). Must not write
to a target: the planner turns the policy into actions.
"""
