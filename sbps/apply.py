"""Applying a plan: runs each action against the stager, claims and backend.

Owns execution and per-action reporting; a failed action never blocks unrelated ones.
Must not decide what to do: that is plan().
"""
