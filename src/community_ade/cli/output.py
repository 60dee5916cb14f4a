"""How commands print and exit, apart from ``common`` (which opens the Runtime), so the
offline commands (``ade audit verify-receipt``) start without the database code."""

from __future__ import annotations

from rich.console import Console

# No emoji codes: resource names like "repo:x" must print as written, not as "repo❌".
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

# Exit codes: 1 the request was refused or failed, 2 bad usage, 3 a service is unreachable.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def say(message: str, style: str | None = None) -> None:
    """A line as written: no markup (a problem may quote brackets) and no wrapping
    (scripts grep this)."""
    console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)
