"""Accounts, stream keys, live state and publish decisions."""

from .config import AuthConfig, DatabaseConfig, Duplicate
from .model import BAD_NAME, DENIED, Channel, Denied, PublishAttempt
from .service import TAKEN_OVER, Accepted, AuthService, Lease
from .store import (
    InvalidName,
    NameTaken,
    SchemaTooNew,
    Store,
    StoreBusy,
    StoreError,
    UnknownUser,
    User,
)

__all__ = [
    "BAD_NAME",
    "DENIED",
    "TAKEN_OVER",
    "Accepted",
    "AuthConfig",
    "AuthService",
    "Channel",
    "DatabaseConfig",
    "Denied",
    "Duplicate",
    "InvalidName",
    "Lease",
    "NameTaken",
    "PublishAttempt",
    "SchemaTooNew",
    "Store",
    "StoreBusy",
    "StoreError",
    "UnknownUser",
    "User",
]
