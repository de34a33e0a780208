"""The error tree of beltcurate.

    CurationError                 base: anything the user can fix; the CLI prints it and exits 1
    ├── ConfigError               a setting is missing, malformed or of the wrong type
    ├── CatalogError              the catalog database cannot be opened or migrated
    ├── UnknownNameError          a registry lookup (strategy, detector, exporter, ...) failed
    ├── InputError                an input file or folder is missing or malformed
    ├── ImageError                a frame is not a usable image (the frame gets quarantined)
    ├── ServiceError              an external service (Label Studio, mongod, Ray) failed
    │   └── AuthError             the service rejected our credentials (401/403)
    ├── LockError                 another run holds the lock (refresh already running)
    └── ExportError               a dataset version could not be written (nothing partial is left)
"""

from __future__ import annotations


class CurationError(Exception):
    """Base class: an error the user can act on; its message names the bad input and the fix."""

    exit_code = 1


class ConfigError(CurationError):
    """A setting is missing, malformed or of the wrong type."""


class CatalogError(CurationError):
    """The catalog database cannot be opened, migrated or is inconsistent."""


class UnknownNameError(CurationError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InputError(CurationError):
    """An input file or folder is missing or malformed."""


class ImageError(CurationError):
    """A frame is not a usable image; ``reason`` is a short machine-readable code."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ServiceError(CurationError):
    """An external service (Label Studio, mongod, Ray) failed or is unreachable."""


class AuthError(ServiceError):
    """The service rejected our credentials (HTTP 401/403)."""


class LockError(CurationError):
    """Another run holds the lock."""

    exit_code = 3


class ExportError(CurationError):
    """A dataset version could not be written; no partial version is left behind."""
