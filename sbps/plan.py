"""The planner: a pure function from desired and actual state to a Plan.

Imports only sbps.model. Every action carries its reason. Must not do I/O.
"""
