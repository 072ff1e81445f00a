"""Error classes shared by every sbps module.

Owns the hierarchy only. Library exceptions (aiohttp, botocore, rtslib, dnspython) are
translated into these where the library is called, chained with ``from``. Every error is
either *temporary* (retry with backoff) or *permanent* (report, skip until the input
changes); callers decide by class, never by parsing messages.
"""

from __future__ import annotations


class SbpsError(Exception):
    """Base of every error sbps raises on purpose.

    ``code`` is a short, stable reason (``etag_mismatch``, ``cache_full``...) used in the
    status snapshot and as a metric label; the message is for people.
    """

    code: str = "error"
    temporary: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class TemporaryError(SbpsError):
    """Something that may work if tried again later: a timeout, a 5xx, a reset."""

    code = "temporary"
    temporary = True


class PermanentError(SbpsError):
    """Something that will fail the same way until its input changes."""

    code = "permanent"


class ConfigError(PermanentError):
    """A configuration value is invalid. Names the key, the value and what is allowed."""

    code = "config"

    def __init__(self, key: str, value: object, allowed: str, *, source: str = "",
                 show_value: bool = True) -> None:
        where = f" (from {source})" if source else ""
        what = f"invalid value {value!r}" if show_value else "invalid"
        super().__init__(f"{key}: {what}{where}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
        self.source = source


class ConfigErrors(ConfigError):
    """Several configuration values are invalid (a file is checked whole): every one of
    them, in the order found. ``key``/``value``/``allowed`` are the first one's."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.key, first.value, first.allowed, source=first.source)
        self.errors = tuple(errors)
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return str(self.args[0])


class InputError(PermanentError):
    """An input record (image record, manifest, boot parameter...) is malformed.

    ``obj`` names the object (an image id, a manifest path) and ``field`` the bad field.
    """

    code = "invalid"

    def __init__(self, obj: str, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{obj}: {field}: {reason}", code=code)
        self.obj = obj
        self.field = field
        self.reason = reason


class UpstreamTemporaryError(TemporaryError):
    """An upstream service (IMS, S3, DNS, Kubernetes) failed in a way worth retrying."""

    code = "upstream_unavailable"


class UpstreamPermanentError(PermanentError):
    """An upstream service refused the request (4xx, access denied, not found)."""

    code = "upstream_refused"


class VerificationError(PermanentError):
    """Staged content does not match what S3 and the manifest promise."""

    code = "verification_failed"


class BackendError(SbpsError):
    """A target backend operation failed. Names the object and the operation."""

    code = "backend"

    def __init__(
        self, operation: str, obj: str, reason: str, *, temporary: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(f"{operation} {obj}: {reason}", code=code)
        self.operation = operation
        self.obj = obj
        self.reason = reason
        self.temporary = temporary
