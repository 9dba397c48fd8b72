"""The one exception tree of seawall.

Every error raised by seawall derives from :class:`SeawallError`, carries the
process exit code the CLI uses for it, and has a message that says what
happened and what to do next. Messages never contain keys, passwords or
plaintext data.

::

    SeawallError (1)
    ├── UsageError (2)                  bad arguments or input from the user
    │   └── PlanError (2)               the plan file is invalid (located messages)
    ├── RepositoryNotFound (10)         no repository at that location
    ├── RepositoryExists (1)            init over an existing repository
    ├── RepositoryLocked (11)           another process holds a conflicting lock
    ├── WrongPassword (12)              no key opens with that password
    ├── SnapshotNotFound (1)            no (or an ambiguous) snapshot for that name
    ├── IntegrityError (1)              an object failed authentication or its hash
    ├── FormatError (1)                 an object is readable but malformed / unsupported
    ├── StorageError (1)                the store failed; ``transient`` says if retry helps
    │   ├── ObjectNotFound (1)          the object does not exist
    │   ├── ObjectExists (1)            a put-if-absent found the name taken
    │   ├── ObjectRetained (1)          a delete refused: the object is under retention
    │   └── StorageFull (1)             no space left on the store
    ├── DamagedSnapshot (1)             restore finished but some files were damaged
    ├── SourceError (1)                 an asset could not be captured or brought back
    ├── ResidencyViolation (1)          a snapshot's residency rule forbids that repository
    ├── ChainExhausted (1)              every step of a fallback chain failed (seawall.degrade)
    ├── AccessDenied (1)                the user's role or second factor does not allow it
    │   └── NotAuthenticated (1)        no valid API token (or an unknown user)
    ├── JobConflict (1)                 the same job is already running (seawall serve)
    ├── AuditError (1)                  the audit log could not be appended to, or is damaged
    └── Cancelled (130)                 the operation was interrupted
"""

from __future__ import annotations

from datetime import datetime


class SeawallError(Exception):
    """Base of every seawall error. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(SeawallError):
    exit_code = 2


class PlanError(UsageError):
    """The plan file is invalid. ``problems`` is one line per problem, each naming the
    file, line and column, the field path and what is expected."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class RepositoryNotFound(SeawallError):
    exit_code = 10


class RepositoryExists(SeawallError):
    pass


class RepositoryLocked(SeawallError):
    exit_code = 11


class WrongPassword(SeawallError):
    exit_code = 12


class SnapshotNotFound(SeawallError):
    pass


class IntegrityError(SeawallError):
    pass


class FormatError(SeawallError):
    pass


class StorageError(SeawallError):
    """The store failed. ``transient`` errors may succeed when retried."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ObjectNotFound(StorageError):
    pass


class ObjectExists(StorageError):
    pass


class ObjectRetained(StorageError):
    """A delete the store refused because the object is under retention (Object Lock).

    ``until`` is the retain-until date when the store said it, else None.
    """

    def __init__(self, message: str, *, until: datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


class StorageFull(StorageError):
    pass


class DamagedSnapshot(SeawallError):
    """Raised after a restore that wrote every healthy file but not all of them."""

    def __init__(self, message: str, damaged: list[str], result: object = None) -> None:
        super().__init__(message)
        self.damaged = damaged
        #: the operation's result (what was restored)
        self.result = result


class SourceError(SeawallError):
    """A source failed: a dump exited with an error, a database refused, a restore target
    exists. The message names the asset and never contains a secret."""


class ResidencyViolation(SeawallError):
    """A snapshot may not be stored in a repository of another region.

    ``copy`` raises it after copying every other snapshot; ``result`` is what it did.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class ChainExhausted(SeawallError):
    """No step of a fallback chain gave an answer. ``reasons`` is (step, why) for each."""

    def __init__(self, message: str, reasons: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.reasons = reasons


class AccessDenied(SeawallError):
    """The control plane refused an operation: the user's role is too low, or a
    destructive operation lacks a valid second factor (TOTP). Nothing was done."""


class NotAuthenticated(AccessDenied):
    """No valid API token was given (missing, malformed, unknown or rotated away)."""


class JobConflict(SeawallError):
    """A job of the same kind over the same assets is already running: overlapping
    runs never start twice."""


class AuditError(SeawallError):
    """An entry could not be appended to the audit log (the operation itself may have
    succeeded: the message says), or the log does not verify."""


class Cancelled(SeawallError):
    exit_code = 130
