"""The node gate: whether this worker serves (always, a flag file, a Kubernetes label).

Owns the providers only; the reconciler acts on their answer.
"""
