"""The one exception tree of seawall.

Every error raised by seawall derives from :class:`SeawallError`, carries the
process exit code the CLI uses for it, and has a message that says what
happened and what to do next. Messages never contain keys, passwords or
plaintext data.

::

    SeawallError (1)
    ├── UsageError (2)                  bad arguments or input from the user
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
    ├── ResidencyViolation (1)          a snapshot's residency rule forbids that repository
    └── Cancelled (130)                 the operation was interrupted
"""

from __future__ import annotations

from datetime import datetime


class SeawallError(Exception):
    """Base of every seawall error. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(SeawallError):
    exit_code = 2


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


class ResidencyViolation(SeawallError):
    """A snapshot may not be stored in a repository of another region.

    ``copy`` raises it after copying every other snapshot; ``result`` is what it did.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class Cancelled(SeawallError):
    exit_code = 130
