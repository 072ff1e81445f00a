"""DNS registration of this worker's SRV and A records.

Owns the registrar protocol and its implementations (off, RFC 2136 with TSIG, PowerDNS
API). Touches only records this worker owns. Must not block projection on failure.
"""
