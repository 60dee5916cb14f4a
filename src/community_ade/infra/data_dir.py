"""The data directory is the server's alone (mode 0700).

It holds the SQLite database, ``secret.key``, the demo's tokens and the embedded Redis:
the user shell commands run as (``ADE_SHELL_USER``) must not read or write any of it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o700


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` with mode 0700, or take group and other permissions away from
    an existing one this process owns (another owner's directory is left as it is, with
    a warning: changing it is that owner's decision)."""
    data_dir.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 == 0:
        return
    if info.st_uid != os.geteuid():
        log.warning(
            "data directory %s (mode %o) is readable by others and not ours to change",
            data_dir,
            mode,
        )
        return
    os.chmod(data_dir, PRIVATE_MODE)
    log.warning("data directory %s was mode %o; now %o", data_dir, mode, PRIVATE_MODE)
