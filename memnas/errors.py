"""Errors memnas raises for bad input; each message is one line naming the bad value."""


class MemnasError(Exception):
    """Base class of memnas's user-facing errors."""


class StoreError(MemnasError):
    """The store cannot be opened, has another schema version, or lacks a record."""


class ConfigError(MemnasError, ValueError):
    """An experiment was configured with a value memnas cannot use."""


class StoreUnavailable(StoreError):
    """The store could not be reached (server down, connection dropped, database locked)
    for longer than the run's patience; nothing it reported stored is lost."""


class StoreFull(StoreError):
    """The disk under the store is full: the write failed and was rolled back."""
