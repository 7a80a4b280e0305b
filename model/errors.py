"""Errors the model raises; the API maps each to its HTTP status."""


class FabricError(Exception):
    status = 500


class InvalidRequest(FabricError):
    status = 400


class Forbidden(FabricError):
    """A valid token asking for something outside its scope."""

    status = 403


class NotFound(FabricError):
    status = 404


class Conflict(FabricError):
    status = 409


class Unavailable(FabricError):
    """The request is valid but a switch or host it needs is not connected."""

    status = 503


class StoreFull(FabricError):
    """The disk (or the database's size limit) allows no more writes, or the store takes no
    write this large at once; reads go on."""

    status = 507


class StoreDamaged(FabricError):
    """A state file that fails SQLite's check or the model's invariants: never served."""


class StoreTooNew(StoreDamaged):
    """A state file a later release wrote (a newer schema version): never served, nor
    changed."""
