"""Authentication (who is acting: passwords, API tokens) and authorization (what a role
may do). ``principal`` and ``tokens`` are pure; ``service`` works over the database."""

from community_ade.auth.principal import (
    HUMAN_ONLY,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    require,
)

__all__ = ["HUMAN_ONLY", "ROLE_PERMISSIONS", "Permission", "Principal", "Role", "require"]
