"""Helpers of the development IMS fake; see contrib/ims_dev_server.py."""
