"""Names people read: users, groups and agents.

A name is stored NFKC-normalised, so ``ａｌｉｃｅ`` (fullwidth) is ``alice``, and a new
name is refused when it merely *looks like* an existing one: ``аlice`` with a Cyrillic
``а``, ``bob1`` next to ``bobl``, ``rnary`` next to ``mary``. "Looks like" is the
confusable-string test of Unicode Technical Standard #39 (Unicode Security Mechanisms):
two strings are confusable when their *skeletons* are equal, the skeleton being the
string in NFD with every character replaced by its prototype from Unicode's
``confusables.txt``, then in NFD again. The table is the one the ``confusables``
distribution ships (read as data; its own matching code is not used). Names are also
compared case-folded, so ``Bob`` next to ``bob`` is refused too.

Pure but for reading that table once.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Mapping
from importlib.metadata import distribution

_TABLE = "confusables/assets/confusables.txt"


def normal(name: str) -> str:
    """A name as stored and looked up: NFKC (compatibility forms folded)."""
    return unicodedata.normalize("NFKC", name)


@functools.cache
def _prototypes() -> Mapping[str, str]:
    """``confusables.txt``: source character → its prototype (one or more characters).
    Located through the distribution's metadata, without importing the package (whose
    import loads a mapping of its own that is not needed here)."""
    path = distribution("confusables").locate_file(_TABLE)
    table: dict[str, str] = {}
    with open(str(path), encoding="utf-8-sig") as lines:
        for line in lines:
            fields = line.split("#", 1)[0].split(";")
            if len(fields) < 2 or not fields[0].strip():
                continue
            source = chr(int(fields[0].strip(), 16))
            table[source] = "".join(chr(int(code, 16)) for code in fields[1].split())
    if not table:
        raise RuntimeError(f"the confusables table {path} is empty")
    return table


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``text``: equal skeletons mean the strings can be
    mistaken for each other."""
    table = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(table.get(c, c) for c in decomposed))


def _keys(name: str) -> frozenset[str]:
    return frozenset({skeleton(name), "\0" + skeleton(name.casefold())})


def lookalike(name: str, existing: Iterable[str]) -> str | None:
    """The first of ``existing`` that ``name`` could be mistaken for without being it,
    or None."""
    keys = _keys(name)
    for other in existing:
        if other != name and keys & _keys(other):
            return other
    return None
