"""Sign-in through the organisation's OpenID Connect provider (docs/auth.md).

authlib runs the protocol: authorization code with PKCE (S256), ``state`` and ``nonce``
checked, the ID token's signature (the provider's JWKS), issuer, audience and expiry
validated. What authlib keeps between the redirect and the callback (state, nonce, the
PKCE verifier) lives in the HttpOnly cookie ``ade_oidc``, MAC'd with the server secret
and bound to this browser, together with where to return and the step-up age asked.

Step-up: ``/auth/oidc/login?max_age=N`` asks the provider for a login at most N seconds
old (``max_age`` and ``prompt=login``) and refuses an ID token whose ``auth_time`` is
older; the new dashboard session records that ``auth_time``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from joserfc.errors import JoseError

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.auth import oidc
from community_ade.dashboard.security import csrf_matches, csrf_token, safe_next
from community_ade.dashboard.views.session import start_session
from community_ade.dashboard.web import PageRoute, secret_of
from community_ade.errors import InvalidInput, NotFound, ServiceUnavailable, Unauthenticated
from community_ade.settings import Settings
from community_ade.storage.models import utcnow

log = logging.getLogger(__name__)
router = APIRouter(route_class=PageRoute)

FLOW_COOKIE = "ade_oidc"
FLOW_PATH = "/auth/oidc"
FLOW_SECONDS = 600
MAX_FLOW_COOKIE = 4000
# Clock skew allowed between the provider's auth_time and this server.
AUTH_TIME_LEEWAY = timedelta(seconds=5)


def client_of(request: Request) -> StarletteOAuth2App:
    """The provider's client, registered once per app; 404 when OIDC is not set up."""
    state = request.app.state
    client: StarletteOAuth2App | None = getattr(state, "oidc_client", None)
    if client is None:
        settings: Settings = state.runtime.settings
        client = register(settings)
        state.oidc_client = client
    return client


def register(settings: Settings) -> StarletteOAuth2App:
    if not settings.oidc_issuer or not settings.oidc_client_id:
        raise NotFound("sign-in with an identity provider is not set up here")
    secret = settings.oidc_client_secret
    oauth = OAuth()
    oauth.register(
        name="idp",
        client_id=settings.oidc_client_id,
        client_secret=secret.get_secret_value() if secret is not None else None,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
    )
    return cast(StarletteOAuth2App, oauth.create_client("idp"))


def _seal(request: Request, flow: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(flow).encode()).decode()
    return body + "." + csrf_token(secret_of(request), "oidc", body)


def _unseal(request: Request) -> dict[str, Any]:
    sealed = request.cookies.get(FLOW_COOKIE, "")
    body, _, mac = sealed.rpartition(".")
    if not body or not csrf_matches(secret_of(request), "oidc", body, mac):
        raise Unauthenticated("this sign-in was not started in this browser, or took too long")
    try:
        flow: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body))
    except (binascii.Error, ValueError):
        raise Unauthenticated("this sign-in's state is unreadable: start again") from None
    return flow


@router.get(FLOW_PATH + "/login")
async def oidc_login(
    request: Request,
    next: str = "/",
    max_age: int | None = Query(default=None, gt=0, le=30 * 86_400),
) -> Response:
    """Off to the provider; ``max_age``: a step-up, the login must be that fresh."""
    client = client_of(request)
    extra: dict[str, str] = {}
    if max_age is not None:
        extra = {"max_age": str(max_age), "prompt": "login"}
    request.scope["session"] = {}
    try:
        response: Response = await client.authorize_redirect(
            request, str(request.url_for("oidc_callback")), **extra
        )
    except (httpx.HTTPError, AuthlibBaseError, ValueError) as exc:
        log.warning("OIDC provider unreachable or misconfigured: %s", exc)
        raise ServiceUnavailable("the identity provider does not answer: try again") from None
    flow = {"session": request.scope["session"], "next": safe_next(next), "max_age": max_age}
    sealed = _seal(request, flow)
    if len(sealed) > MAX_FLOW_COOKIE:
        raise InvalidInput("the return address is too long")
    response.set_cookie(
        FLOW_COOKIE,
        sealed,
        max_age=FLOW_SECONDS,
        path=FLOW_PATH,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back
        secure=request.url.scheme == "https",
    )
    return response


@router.get(FLOW_PATH + "/callback", name="oidc_callback")
async def oidc_callback(request: Request, session: SessionDep, runtime: RuntimeDep) -> Response:
    """Back from the provider: validate, sign the person in (created or synced), start
    a dashboard session and return where they were going."""
    client = client_of(request)
    flow = _unseal(request)
    request.scope["session"] = dict(flow.get("session") or {})
    try:
        token = await client.authorize_access_token(request)
    except (AuthlibBaseError, JoseError) as exc:
        log.info("OIDC sign-in refused: %s", exc)
        raise Unauthenticated(f"the identity provider's answer was refused ({exc})") from None
    except httpx.HTTPError as exc:
        log.warning("OIDC token endpoint unreachable: %s", exc)
        raise ServiceUnavailable("the identity provider does not answer: try again") from None
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    if not claims:
        raise Unauthenticated("the identity provider sent no ID token")
    settings: Settings = runtime.settings
    issuer = settings.oidc_issuer or ""
    # authlib checked it against the discovery document; this pins it to the setting.
    if claims.get("iss") not in {issuer, issuer.rstrip("/")}:
        raise Unauthenticated("the ID token comes from another issuer")
    auth_time = _auth_time(claims, flow.get("max_age"))
    identity = oidc.identity_from_claims(claims, oidc.ClaimMapping.from_settings(settings))
    principal = await oidc.sign_in(session, identity)
    response = await start_session(
        request, session, runtime, principal, next_url=flow.get("next") or "/", auth_time=auth_time
    )
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


def _auth_time(claims: dict[str, Any], max_age: object) -> datetime | None:
    """The ID token's ``auth_time``; a step-up (``max_age``) needs one that fresh."""
    value = claims.get("auth_time")
    when = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, UTC)
    fresh_enough = (
        when is not None
        and isinstance(max_age, int)
        and (utcnow() - when <= timedelta(seconds=max_age) + AUTH_TIME_LEEWAY)
    )
    if isinstance(max_age, int) and not fresh_enough:
        raise Unauthenticated("the identity provider did not confirm a fresh login: sign in again")
    return when
