"""Password hashing: argon2id (argon2-cffi, RFC 9106 parameters of the library's default
profile). Hashing is deliberately slow and memory-hard, so callers on an event loop run
these functions in a thread (``asyncio.to_thread``)."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from community_ade.errors import InvalidInput

MIN_LENGTH = 12
# Long enough for any passphrase, short enough that nobody makes us hash a megabyte.
MAX_LENGTH = 1024

_hasher = PasswordHasher(type=Type.ID)


def check_policy(password: str) -> None:
    """Raise ``InvalidInput`` unless the password may be set."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) of a password that meets the policy."""
    check_policy(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; False (never an exception) on a mismatch or a hash
    that cannot be read."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (rehash on login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
