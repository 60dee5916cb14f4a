"""Secret references in payloads (pure, apart from asking a ``SecretSource``).

A payload never carries a credential itself: where one belongs it names a stored secret,
``{"secret": "deploy-token"}``, optionally with a ``prefix`` sent before the value
(``{"secret": "deploy-token", "prefix": "Bearer "}``). The preview shows the reference
(``Bearer {secret:deploy-token}``) and the digest covers it, so reviewers approve *which*
secret goes *where*; the worker resolves the value at apply, and anything it records
afterwards is scrubbed of the values it revealed.

The rule of which places are secret-bearing lives here so that every executor applies the
same one: a header, query parameter or environment variable named like a credential
(``secret_bearing_name``) must hold a reference; a plain string there is refused
(``refuse_inline_secret``) with a message pointing to ``ade secrets set``.

An executor whose payloads may hold references implements ``UsesSecrets``: task creation
then refuses inline values and unknown names (422) before anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from community_ade.execution.executors.base import ApplyFailed, FieldError, Payload

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MAX_PREFIX_CHARS = 64
_NAME = re.compile(NAME_PATTERN)
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_REFERENCE_KEYS = frozenset({"secret", "prefix"})
# Named like a credential: a header (Authorization, X-Api-Key, X-Auth-Token, Cookie), a
# query parameter (access_token, api_key, sig) or an environment variable (DB_PASSWORD).
_SECRET_NAMES = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "key", "sig", "code"}
)
_SECRET_PARTS = (
    "token", "secret", "passw", "pwd", "key", "auth", "session", "credential", "signature",
)  # fmt: skip
# Named like one but not one: an idempotency key is chosen per request, not a credential.
_NOT_SECRET = frozenset({"idempotency-key", "x-idempotency-key"})


def secret_bearing_name(name: str) -> bool:
    """Whether a header, query parameter or environment variable called ``name`` carries
    a credential, so its value must be a reference (case and ``_``/``-`` ignored)."""
    lowered = name.lower().replace("_", "-")
    if lowered in _NOT_SECRET:
        return False
    # "auth" names a credential, "author" (X-Author, ?author=) does not.
    parts = lowered.replace("authoriz", "auth").replace("author", "")
    return lowered in _SECRET_NAMES or any(part in parts for part in _SECRET_PARTS)


@dataclass(frozen=True)
class SecretRef:
    """A reference to the stored secret ``name``; ``prefix`` is sent before its value."""

    name: str
    prefix: str = ""

    def shown(self) -> str:
        """How previews, results and messages show it: ``Bearer {secret:deploy-token}``."""
        return f"{self.prefix}{{secret:{self.name}}}"

    def with_value(self, revealed: Mapping[str, str]) -> str:
        return self.prefix + revealed[self.name]


Value = str | SecretRef
"""A place that may hold a reference: a plain string or a reference."""


class SecretReference(BaseModel):
    """A stored secret, named where a credential belongs; its value is sent at apply and
    never shown."""

    # The JSON Schema of a reference in payload schemas; ``parse_reference`` parses one.
    model_config = ConfigDict(extra="forbid")

    secret: str = Field(
        pattern=NAME_PATTERN,
        description="The secret's name (`ade secrets set NAME`, PUT /api/v1/secrets/NAME).",
    )
    prefix: str = Field(
        default="",
        max_length=MAX_PREFIX_CHARS,
        pattern=r"^[\x20-\x7e]*$",
        description='Printable ASCII sent before the value, e.g. "Bearer ".',
    )


@dataclass(frozen=True)
class SecretUse:
    """Where a payload refers to secrets, and the problems with how it does (inline
    values in secret-bearing places, malformed references)."""

    references: tuple[tuple[str, SecretRef], ...] = ()
    problems: tuple[FieldError, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(ref.name for _, ref in self.references)


@runtime_checkable
class UsesSecrets(Protocol):
    """An executor whose payloads may refer to stored secrets. ``secret_use`` is pure and
    must cope with any payload, however malformed (it runs before ``validate``)."""

    def secret_use(self, payload: Payload) -> SecretUse: ...


class SecretSource(Protocol):
    """Where an apply gets secret values (``store.SecretVault``)."""

    async def reveal(self, names: Collection[str]) -> Mapping[str, str]:
        """The values of those of ``names`` that exist."""
        ...


def is_reference(value: object) -> bool:
    return isinstance(value, Mapping) and "secret" in value


def parse_reference(
    where: str, raw: Mapping[str, Any]
) -> tuple[SecretRef | None, list[FieldError]]:
    """``{"secret": NAME, "prefix": TEXT}`` as a ``SecretRef``, or the problems with it."""
    errors = [
        FieldError(f"{where}.{key}", "unknown field") for key in raw if key not in _REFERENCE_KEYS
    ]
    name, prefix = raw.get("secret"), raw.get("prefix", "")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        errors.append(
            FieldError(f"{where}.secret", "must name a secret: 1-64 characters a-z 0-9 . _ -")
        )
    if not isinstance(prefix, str) or not _PRINTABLE.fullmatch(prefix):
        errors.append(FieldError(f"{where}.prefix", "must be printable ASCII text"))
    elif len(prefix) > MAX_PREFIX_CHARS:
        errors.append(
            FieldError(f"{where}.prefix", f"must be at most {MAX_PREFIX_CHARS} characters")
        )
    if errors:
        return None, errors
    return SecretRef(str(name), str(prefix)), []


def refuse_inline_secret(where: str) -> FieldError:
    """The refusal of a plain value in a secret-bearing place."""
    return FieldError(
        where,
        "is a credential and must not be written inline (tasks and previews are readable "
        "by every viewer): store it with `ade secrets set NAME` (or PUT /api/v1/secrets/NAME) "
        'and write {"secret": "NAME"} here, with "prefix": "Bearer " if the value needs one',
    )


def parse_value(
    where: str, raw: object, *, secret_bearing: bool
) -> tuple[Value | object, list[FieldError]]:
    """A value that may be a reference: a reference is parsed (``SecretRef``), a plain
    value in a secret-bearing place is refused, anything else is handed back unchanged
    for the caller to check (a header's characters, an environment variable's)."""
    if isinstance(raw, Mapping):
        if not is_reference(raw):
            return raw, []
        return parse_reference(where, raw)
    if secret_bearing and raw is not None:
        return raw, [refuse_inline_secret(where)]
    return raw, []


def use_of(where: str, values: object, *, secret_bearing: bool | None = None) -> SecretUse:
    """The references and inline-secret problems of a mapping of names to values (headers,
    query parameters, environment). ``secret_bearing`` None: decided by each name
    (``secret_bearing_name``); True: every value must be a reference. Not a mapping: no use."""
    if not isinstance(values, Mapping):
        return SecretUse()
    references: list[tuple[str, SecretRef]] = []
    problems: list[FieldError] = []
    for name, raw in values.items():
        at = f"{where}.{name}"
        bearing = secret_bearing_name(str(name)) if secret_bearing is None else secret_bearing
        value, errors = parse_value(at, raw, secret_bearing=bearing)
        problems += errors
        if isinstance(value, SecretRef):
            references.append((at, value))
    return SecretUse(tuple(references), tuple(problems))


def combined(uses: Iterable[SecretUse]) -> SecretUse:
    found = tuple(uses)
    return SecretUse(
        tuple(r for use in found for r in use.references),
        tuple(p for use in found for p in use.problems),
    )


def shown(value: Value) -> str:
    return value.shown() if isinstance(value, SecretRef) else value


def resolve(value: Value, revealed: Mapping[str, str]) -> str:
    return value.with_value(revealed) if isinstance(value, SecretRef) else value


def resolve_references(
    fragment: Mapping[str, Value], revealed: Mapping[str, str]
) -> dict[str, str]:
    """``fragment`` (headers, environment) with every reference replaced by its value."""
    return {name: resolve(value, revealed) for name, value in fragment.items()}


def names_in(values: Iterable[Value]) -> frozenset[str]:
    return frozenset(v.name for v in values if isinstance(v, SecretRef))


async def reveal_for_apply(source: SecretSource | None, names: Collection[str]) -> dict[str, str]:
    """The values of ``names``, all of them, or a permanent ``ApplyFailed`` naming the
    missing ones (a secret deleted after approval cannot be guessed)."""
    if not names:
        return {}
    if source is None:
        raise ApplyFailed("this apply has no secret store to read the task's secrets from")
    revealed = dict(await source.reveal(names))
    missing = sorted(set(names) - set(revealed))
    if missing:
        raise ApplyFailed(
            f"the task refers to secret(s) that no longer exist: {', '.join(missing)}; an "
            "admin must store them again (`ade secrets set NAME`) and the task be submitted anew"
        )
    return revealed


def scrub(text: str, revealed: Mapping[str, str]) -> str:
    """``text`` with every revealed value replaced by its reference: what an apply records
    (an error message, a response that echoes a header) must not carry a value."""
    for name, value in sorted(revealed.items(), key=lambda item: -len(item[1])):
        if value:
            text = text.replace(value, f"{{secret:{name}}}")
    return text
