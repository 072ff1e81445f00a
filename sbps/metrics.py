"""Prometheus metrics: a collector that reads the status snapshot at scrape time.

Must not read configfs or call a backend on the event loop.
"""
