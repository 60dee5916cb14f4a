"""A real OpenID Provider for tests: npm's ``oidc-provider`` (panva; OpenID certified),
configured by ``oidc_provider.mjs`` and started on a free loopback port.

The package is installed once into a cache directory (``ADE_TEST_CACHE_DIR``, default
``~/.cache/community-ade-tests``) with ``npm install --prefix``, and reused after. Without
node or npm, or if the install or start fails, the test is skipped — and fails under
``CI=true`` (``unavailable``).

``Browser`` drives a sign-in the way a person's browser would, with plain HTTP: the
app (in process) on one side, the provider (a real server) on the other, each with its
own cookies, following redirects and submitting the provider's login form.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from conftest import unavailable

PACKAGE = "oidc-provider@9"  # the major the configuration is written for
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "ade-dashboard"
CLIENT_SECRET = "ade-test-secret"
START_SECONDS = 30
INSTALL_SECONDS = 300


def _module_dir() -> Path:
    base = os.environ.get("ADE_TEST_CACHE_DIR") or str(Path.home() / ".cache")
    return Path(base) / "community-ade-tests" / PACKAGE.replace("@", "-")


def installed_provider() -> Path:
    """The directory whose node_modules holds oidc-provider, installing it if needed."""
    where = _module_dir()
    if (where / "node_modules" / "oidc-provider" / "package.json").exists():
        return where
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        unavailable("node and npm are needed to run the test OpenID provider")
    where.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(where), PACKAGE, "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_SECONDS)
    except subprocess.TimeoutExpired:
        unavailable(f"`{' '.join(command)}` took over {INSTALL_SECONDS}s")
    if done.returncode != 0:
        unavailable(f"`{' '.join(command)}` failed: {done.stderr[-2000:]}")
    return where


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Provider:
    issuer: str
    accounts_file: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """What the provider says about each login name (read at every login)."""
        self.accounts_file.write_text(json.dumps(accounts))


@contextlib.contextmanager
def run_provider(
    directory: Path, redirect_uri: str, accounts: dict[str, dict[str, Any]]
) -> Iterator[Provider]:
    """An oidc-provider instance with one client (``CLIENT_ID``) redirecting to
    ``redirect_uri``; stopped when the block ends."""
    module_dir = installed_provider()
    port = _free_port()
    provider = Provider(f"http://127.0.0.1:{port}", directory / f"accounts-{port}.json")
    provider.set_accounts(accounts)
    node = shutil.which("node") or "node"
    process = subprocess.Popen(
        [node, str(SCRIPT), str(module_dir), str(port), str(provider.accounts_file), redirect_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = threading.Event()
        output: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if line.startswith("ready "):
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_SECONDS):
            unavailable(f"the test OpenID provider did not start: {''.join(output)[-2000:]}")
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
MAX_HOPS = 20


class Browser:
    """One person's browser: the app's cookies in ``app``, the provider's in ``idp``."""

    def __init__(self, app: httpx.AsyncClient, provider: Provider) -> None:
        self.app = app
        self.provider = provider
        self.idp = httpx.AsyncClient(timeout=30)

    async def aclose(self) -> None:
        await self.idp.aclose()

    def _client(self, url: str) -> httpx.AsyncClient:
        return self.idp if url.startswith(self.provider.issuer) else self.app

    async def follow(self, response: httpx.Response, login: str) -> httpx.Response:
        """Follow redirects across app and provider, logging in as ``login`` when the
        provider asks (and confirming consent), until the app answers a page."""
        for _ in range(MAX_HOPS):
            url = str(response.url)
            if response.status_code in (302, 303):
                target = urljoin(url, response.headers["location"])
                response = await self._client(target).get(target)
                continue
            if url.startswith(self.provider.issuer) and response.status_code == 200:
                match = FORM_ACTION.search(response.text)
                assert match is not None, f"no form on the provider's page: {response.text}"
                fields = {"prompt": "consent"}
                if 'name="login"' in response.text:
                    fields = {"prompt": "login", "login": login, "password": "any"}
                response = await self.idp.post(urljoin(url, match.group(1)), data=fields)
                continue
            return response
        raise AssertionError(f"more than {MAX_HOPS} redirects")

    async def follow_provider_only(self, response: httpx.Response, login: str, issuer: str) -> str:
        """Like ``follow`` at the provider ``issuer``, but stop at its redirect back to
        the app: that URL (the callback with the code)."""
        for _ in range(MAX_HOPS):
            url = str(response.url)
            if response.status_code in (302, 303):
                target = urljoin(url, response.headers["location"])
                if not target.startswith(issuer):
                    return target
                response = await self.idp.get(target)
                continue
            match = FORM_ACTION.search(response.text)
            assert match is not None, f"no form on the provider's page: {response.text}"
            fields = {"prompt": "consent"}
            if 'name="login"' in response.text:
                fields = {"prompt": "login", "login": login, "password": "any"}
            response = await self.idp.post(urljoin(url, match.group(1)), data=fields)
        raise AssertionError(f"more than {MAX_HOPS} redirects")

    async def get(self, url: str, login: str) -> httpx.Response:
        return await self.follow(await self.app.get(url), login)
