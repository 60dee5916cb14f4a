"""Clean apply locks on Redis (architecture §5)."""

from community_ade.locks.manager import Grant, LockManager
from community_ade.locks.model import LockConfig, LockRequest, Mode

__all__ = ["Grant", "LockConfig", "LockManager", "LockRequest", "Mode"]
