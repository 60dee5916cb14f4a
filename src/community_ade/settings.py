"""Settings, read once from the environment (prefix ``ADE_``)."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from community_ade.defaults import DEFAULT_URL

# The pattern lives in settings (not locks.model) so settings import nothing of the domain.
DOMAIN_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


SECRETS_KEY_BYTES = 32


def parse_secrets_keys(text: str, *, source: str) -> tuple[bytes, ...]:
    """The keys of a comma-separated list (``ADE_SECRETS_KEY``, the data directory's
    ``secrets.key``); ``ValueError`` naming ``source`` unless each is 32 bytes in
    URL-safe base64."""
    keys = []
    for part in text.split(","):
        try:
            key = base64.urlsafe_b64decode(part.strip().encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != SECRETS_KEY_BYTES:
            raise ValueError(
                f"{source} must hold keys of {SECRETS_KEY_BYTES} bytes in URL-safe base64, "
                "separated by commas (`ade secrets new-key` prints one)"
            )
        keys.append(key)
    return tuple(keys)


def default_data_dir() -> Path:
    """Per-user data directory: ``$XDG_DATA_HOME/community-ade`` or ``~/.local/share/...``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "community-ade"


class Settings(BaseSettings):
    """Every setting of Community ADE. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="ADE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded Redis and the default SQLite database keep their files.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis to use (redis://, rediss://, unix://). Unset: an embedded Redis "
        "started in the data directory. A Cluster node's URL selects Cluster mode.",
    )
    database_url: str | None = Field(
        default=None,
        description="Database (postgresql://… or sqlite:///…). Unset: the SQLite file "
        "ade.db in the data directory, migrated automatically.",
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=100,
        description="PostgreSQL connections a process keeps open (and as many more at a "
        "peak, closed after it). Requests and the background loops of one `ade serve` "
        "need more than SQLAlchemy's default 5 at once: below that, connections are "
        "opened and closed all the time, each with an empty statement cache.",
    )
    workspace_roots: list[Path] = Field(
        default_factory=list,
        description="Directories executors may change (files.write roots, git.patch "
        'repositories), as a JSON list, e.g. ["/srv/repos"]. Default: <data dir>/workspaces.',
    )
    http_allowlist: list[str] = Field(
        default_factory=list,
        description="URL prefixes http.request tasks may call, as a JSON list, e.g. "
        '["https://hooks.example.com/deploy/"]. Scheme, host and port must match exactly and '
        "the path at a segment boundary. Default: empty, no URL is allowed.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://[^\s]+$",
        max_length=500,
        description="The server's address as reviewers reach it: the base of the dashboard "
        "links in notifications (Slack, e-mail).",
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        pattern=r"^https?://[^\s]+/$",
        max_length=500,
        description="Base URL of Slack's Web API (ending in /); another only to point Slack "
        "approvals at a test recorder.",
    )
    slack_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often `ade serve` looks for tasks whose Slack messages are due, "
        "besides at once after each change this process commits.",
    )
    startup_wait_seconds: float = Field(
        default=120.0,
        ge=0,
        description="How long `ade serve` and `ade worker` wait at start-up for Redis and "
        "the database to answer (and for the schema to be migrated) before giving up.",
    )
    # -- shell: who runs commands, and the sandbox of previews --
    shell_user: str | None = Field(
        default=None,
        min_length=1,
        description="The OS user (name or uid) approved shell commands and sandboxed "
        "previews run as; never root. Unset: nobody when the worker runs as root, else the "
        "worker's own user. Switching users needs a worker running as root.",
    )
    shell_free_form: bool = Field(
        default=False,
        description="Whether shell tasks may carry their own command instead of naming an "
        "admin's shell profile (they never get a preview command either way).",
    )
    sandbox_bwrap: str = Field(
        default="bwrap",
        min_length=1,
        description="bubblewrap, which every shell preview runs in (a name on PATH or a "
        "path); without a working one shell previews are refused.",
    )
    sandbox_cpu_seconds: int = Field(
        default=30, ge=1, le=3600, description="CPU seconds a sandboxed preview may use."
    )
    sandbox_memory_mb: int = Field(
        default=1024, ge=16, le=1024 * 1024, description="Address space of a sandboxed preview."
    )
    sandbox_file_size_mb: int = Field(
        default=64, ge=1, le=1024 * 1024, description="Largest file a sandboxed preview writes."
    )
    sandbox_max_processes: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Processes of the shell user at once (RLIMIT_NPROC) inside a preview.",
    )
    sandbox_scratch_mb: int = Field(
        default=64, ge=1, le=1024 * 1024, description="Size of a preview's private /tmp."
    )
    sweep_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the server sends the reminders due and settles tasks past "
        "their review or approval deadline (docs/policies.md §6).",
    )
    idempotency_key_ttl_hours: float = Field(
        default=24.0,
        gt=0,
        description="How long a stored Idempotency-Key answer is replayed; after that the key "
        "is forgotten (the sweep deletes it) and may be used again.",
    )
    lock_domain: str = Field(
        default="default",
        pattern=DOMAIN_PATTERN,
        description="Default lock domain: the Cluster hash tag all of a request's keys share.",
    )
    lock_lease_seconds: float = Field(
        default=30.0, gt=0, description="Agent session lease; a missed lease frees the grants."
    )
    lock_renew_seconds: float | None = Field(
        default=None, gt=0, description="Heartbeat interval; default lease / 3."
    )
    lock_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        description="After a grant ends by expiry or force release (not release), the next grant "
        "of its resources waits this long.",
    )
    lock_deadlock_timeout_seconds: float = Field(
        default=1.0, gt=0, description="How long a request waits before it searches for a deadlock."
    )
    lock_default_capacity: int = Field(
        default=4, ge=1, description="Concurrent grants per agent unless set for that agent."
    )
    lock_backstop_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Longest a waiter sleeps without a wake-up before it re-checks its request.",
    )
    lock_events_maxlen: int = Field(
        default=10_000, ge=100, description="Approximate length cap of each domain's event stream."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the server reads, in bytes (smaller limits apply "
        "to the login form, token routes and the lock and lease routes); a larger one is "
        "refused with 413 before anything reads it. The default fits a files.write task at "
        "its 10 MB content limit with room for JSON escaping.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    # -- agents: leases and health --
    agent_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Default length of an agent's HTTP lease (POST /api/v1/leases); an agent "
        "with no live lease and no lock session is offline.",
    )
    agent_health_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the server re-assesses agents' health and publishes "
        "agent:health when a status changes.",
    )
    # -- execution: queue and worker --
    queue_name: str = Field(
        default="tasks",
        pattern=DOMAIN_PATTERN,
        description="The task queue: the Cluster hash tag of its keys. Servers and workers "
        "that should share work use the same name.",
    )
    worker_concurrency: int = Field(
        default=4, ge=1, le=256, description="Tasks one `ade worker` process applies at once."
    )
    worker_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Applies of one task before a transient failure fails it.",
    )
    worker_backoff_base_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Retry delay after the first failed attempt; doubles each time.",
    )
    worker_backoff_cap_seconds: float = Field(
        default=300.0, gt=0, description="Longest retry delay (before jitter)."
    )
    worker_reclaim_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A claimed message untouched this long belongs to a dead worker and is "
        "reclaimed.",
    )
    worker_reconcile_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often a worker queues approved (and applying) tasks missing from "
        "the queue, e.g. after Redis lost its data.",
    )
    worker_lock_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a worker waits for a task's locks before re-queueing it.",
    )
    # -- secrets --
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Key(s) sealing stored secrets (AES-256-GCM): 32 bytes in URL-safe base64, "
        "several separated by commas, the first seals (`ade secrets new-key`). Unset: generated "
        "once into <data dir>/secrets.key (mode 0600). Share it between servers and workers.",
    )
    # -- dashboard --
    secret_key: SecretStr | None = Field(
        default=None,
        description="Secret for the dashboard's CSRF tokens (HMAC of the session). Unset: "
        "generated once into <data dir>/secret.key (mode 0600). Share it between servers.",
    )
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a dashboard login lasts."
    )
    password_login: bool = Field(
        default=True,
        description="Whether the dashboard offers username/password login. Turn it off "
        "(`false`) once people sign in with OpenID Connect (docs/auth.md).",
    )
    # -- OpenID Connect (docs/auth.md) --
    oidc_issuer: str | None = Field(
        default=None,
        max_length=500,
        description="The identity provider's issuer URL (its "
        "`/.well-known/openid-configuration` is read). Unset: no OpenID Connect sign-in.",
    )
    oidc_client_id: str | None = Field(
        default=None, max_length=500, description="This dashboard's client id at the provider."
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="The client secret (confidential client)."
    )
    oidc_scopes: str = Field(
        default="openid profile email",
        max_length=500,
        description="Scopes asked for (space-separated; `openid` is required). Add the "
        "one that releases the groups claim if the provider needs it (e.g. `groups`).",
    )
    oidc_display_name: str = Field(
        default="your identity provider",
        max_length=100,
        description='Shown on the login page: "Sign in with <name>".',
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        max_length=100,
        description="The ID token claim that names the user here (falls back to `email`'s "
        "local part, then `sub`).",
    )
    oidc_groups_claim: str = Field(
        default="groups",
        max_length=100,
        description="The claim listing the person's groups at the provider.",
    )
    oidc_group_map: dict[str, str] = Field(
        default_factory=dict,
        description='Provider group → reviewer group here, as JSON, e.g. {"okta-dba": '
        "\"db-owners\"}. Empty: the provider's group names are used as they are. A user's "
        "groups are set to exactly the mapped ones at every sign-in.",
    )
    oidc_role_map: dict[str, str] = Field(
        default_factory=dict,
        description='Provider group → role here, as JSON, e.g. {"ade-admins": "admin", '
        '"ade-reviewers": "reviewer"}; the highest matching role wins, at every sign-in.',
    )
    oidc_default_role: str = Field(
        default="viewer",
        pattern="^(viewer|submitter|reviewer|admin)$",
        description="The role of a person none of whose groups is in the role map.",
    )
    # -- login throttling and rate limits --
    login_free_failures_per_account: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed dashboard logins of one username (known or not) before each "
        "further failure doubles the wait (429 with Retry-After).",
    )
    login_free_failures_per_address: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed dashboard logins from one client address, whatever the username, "
        "before each further failure doubles the wait.",
    )
    login_backoff_base_seconds: float = Field(
        default=1.0, gt=0, description="The first wait once the free failures are used up."
    )
    login_backoff_cap_seconds: float = Field(
        default=900.0, gt=0, description="The longest wait between two login attempts."
    )
    login_failure_memory_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Failed logins are forgotten this long after the newest one (at least "
        "ADE_LOGIN_BACKOFF_CAP_SECONDS).",
    )
    audit_verify_per_minute: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="GET /api/v1/audit/verify calls per user (or agent) per minute; more get "
        "429 with Retry-After.",
    )
    # -- live events: relay and WebSocket --
    events_maxlen: int = Field(
        default=100_000,
        ge=100,
        description="Approximate length cap of the events stream: how far back a "
        "reconnecting WebSocket client can resume.",
    )
    events_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="How often the relay looks for audit rows committed by other processes "
        "and for lock events (its own process's commits wake it at once).",
    )
    ws_ping_seconds: float = Field(
        default=20.0, gt=0, description="Interval of the WebSocket's ping frames."
    )
    ws_client_buffer: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Events queued for one WebSocket client; a client that falls this far "
        "behind is disconnected (close code 4408).",
    )
    ws_max_message_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        le=16 * 1024 * 1024,
        description="Largest WebSocket message a client may send (its messages are small "
        "JSON objects); a larger one closes the socket with 1009.",
    )
    ws_messages_per_minute: int = Field(
        default=120,
        ge=1,
        le=100_000,
        description="Messages one WebSocket client may send per minute; more close the "
        "socket with 4429.",
    )
    ws_connections_per_principal: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Open WebSockets one user or agent may hold on one server process; the "
        "next is closed with 4429.",
    )
    ws_auth_recheck_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often a server re-checks the tokens of its open WebSockets: a "
        "revoked or expired token, a disabled owner or a dashboard logout closes them with "
        "4401 within this time.",
    )

    # -- the audit log as a transparency log --
    audit_signing_key: SecretStr | None = Field(
        default=None,
        description="Ed25519 private key that signs the audit log's checkpoints, as base64 of "
        "its 32-byte seed. Unset: generated once into <data dir>/audit-signing.key (mode "
        "0600). Share it between servers; its public key is GET /.well-known/ade-audit-key.",
    )
    audit_origin: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[!-~]+$",
        description="The checkpoints' origin line, naming this deployment's log (no spaces). "
        "Default: community-ade/<the signing key's id in hex>.",
    )
    audit_checkpoint_entries: int = Field(
        default=100,
        ge=1,
        description="A new checkpoint is signed once the log grew by this many entries …",
    )
    audit_checkpoint_seconds: float = Field(
        default=60.0,
        gt=0,
        description="… or this long after the last one, when the log grew at all.",
    )
    # -- outbound webhooks (docs/notifications.md) --
    webhook_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="How long a webhook receiver has to answer one delivery attempt.",
    )
    webhook_retry_schedule: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=1,
        max_length=50,
        description="Seconds before each delivery attempt, after the previous one fails "
        "(the first is the first attempt), as a JSON list; each gets ±10 % jitter. Default "
        "Svix's: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.",
    )
    webhook_disable_after_hours: float = Field(
        default=120.0,
        gt=0,
        description="A webhook endpoint whose every attempt failed for this long is "
        "disabled and an admin told (audit event webhook:disabled, dashboard notice).",
    )
    webhook_secret_overlap_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 30,
        description="After a secret rotation, how long deliveries are signed with the old "
        "secret too (a second signature), unless the rotation names its own overlap.",
    )
    webhook_concurrency: int = Field(
        default=32, ge=1, le=1024, description="Webhook requests in flight per process."
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Webhook requests in flight per endpoint per process, so that one slow "
        "endpoint cannot hold back the others.",
    )
    webhook_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often a process looks for due webhook deliveries (retries, and "
        "deliveries queued by other processes); new events are delivered at once.",
    )
    webhook_retention_days: float = Field(
        default=14.0,
        gt=0,
        description="Finished webhook deliveries (and their attempts) older than this are "
        "deleted from the delivery log.",
    )

    # -- e-mail notifications (docs/notifications.md) --
    smtp_host: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="SMTP server that sends reviewers their e-mails. Unset: no e-mail is sent.",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (upgrade a plain connection; refused if the server cannot), "
        "tls (TLS from the first byte, usually port 465) or none (a local relay only).",
    )
    smtp_user: str | None = Field(
        default=None, min_length=1, max_length=254, description="SMTP login (unset: none)."
    )
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password; or name a stored secret with the next setting."
    )
    smtp_password_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Name of a secret in the secrets store (`ade secrets set`) holding the "
        "SMTP password, read at each connection (so a rotation needs no restart).",
    )
    smtp_from: str = Field(
        default="Community ADE <ade@localhost>",
        min_length=3,
        max_length=254,
        description="The From address of notification e-mails.",
    )
    smtp_timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Timeout of one SMTP connection and message."
    )
    email_link_ttl_hours: float = Field(
        default=72.0,
        gt=0,
        le=24 * 30,
        description="How long a decision link in an e-mail may be used (once).",
    )
    email_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="How often the e-mail sender looks for new review requests committed "
        "by other processes and for messages that became due (its own commits wake it).",
    )
    email_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="SMTP attempts of one message before it is given up (marked failed).",
    )
    email_backoff_base_seconds: float = Field(
        default=5.0, gt=0, description="Wait after the first failed SMTP attempt; doubles."
    )
    email_backoff_cap_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two SMTP attempts."
    )

    @property
    def allowed_workspace_roots(self) -> tuple[Path, ...]:
        return tuple(self.workspace_roots) or (self.data_dir / "workspaces",)

    @model_validator(mode="after")
    def _secrets_key_well_formed(self) -> Settings:
        if self.secrets_key is not None:  # wrong here, not at the first apply that needs it
            parse_secrets_keys(self.secrets_key.get_secret_value(), source="ADE_SECRETS_KEY")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        """A half-configured identity provider fails at start, not at someone's sign-in."""
        if self.oidc_issuer is None:
            return self
        if not self.oidc_client_id:
            raise ValueError("ADE_OIDC_ISSUER is set: set ADE_OIDC_CLIENT_ID too")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("ADE_OIDC_SCOPES must include 'openid'")
        roles = {"viewer", "submitter", "reviewer", "admin"}
        unknown = sorted(set(self.oidc_role_map.values()) - roles)
        if unknown:
            raise ValueError(f"ADE_OIDC_ROLE_MAP names unknown roles: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _retry_schedule_well_formed(self) -> Settings:
        if any(not 0 <= delay <= 7 * 86400 for delay in self.webhook_retry_schedule):
            raise ValueError("ADE_WEBHOOK_RETRY_SCHEDULE holds seconds from 0 to 604800")
        return self

    @model_validator(mode="after")
    def _renewal_shorter_than_lease(self) -> Settings:
        renew = self.lock_renew_seconds
        if renew is not None and renew >= self.lock_lease_seconds:
            raise ValueError(
                f"ADE_LOCK_RENEW_SECONDS ({self.lock_renew_seconds}) must be shorter than "
                f"ADE_LOCK_LEASE_SECONDS ({self.lock_lease_seconds})"
            )
        return self

    @model_validator(mode="after")
    def _failures_outlive_the_longest_wait(self) -> Settings:
        if self.login_backoff_base_seconds > self.login_backoff_cap_seconds:
            raise ValueError(
                "ADE_LOGIN_BACKOFF_BASE_SECONDS must not exceed ADE_LOGIN_BACKOFF_CAP_SECONDS"
            )
        if self.login_failure_memory_seconds < self.login_backoff_cap_seconds:
            raise ValueError(
                "ADE_LOGIN_FAILURE_MEMORY_SECONDS must be at least ADE_LOGIN_BACKOFF_CAP_SECONDS"
            )
        return self


class ClientSettings(BaseSettings):
    """What the SDK (``community_ade.client``) reads when it is not given arguments. The
    README's configuration table lists these too."""

    model_config = SettingsConfigDict(env_prefix="ADE_", extra="ignore", frozen=True)

    url: str = Field(
        default=DEFAULT_URL,
        description="Base URL of the server the SDK talks to (`ade serve`'s address).",
    )
    token: SecretStr | None = Field(
        default=None, description="The API token the SDK sends (`ade tokens create`)."
    )
    events_url: str | None = Field(
        default=None,
        description="Base URL of the server processes the SDK's `wait` follows tasks on "
        "(their events WebSocket and reads); default `ADE_URL`. Point it at processes "
        "kept for waiting so decisions reach agents at once under load (docs/sdk.md).",
    )
