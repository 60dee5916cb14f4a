"""``ade serve``: the HTTP API (and, later, the dashboard) on the embedded default."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from community_ade.api.app import create_app
from community_ade.cli.common import load_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
) -> None:
    """Serve the REST API; /healthz answers once Redis and the database are open."""
    settings = load_settings()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        lifespan="on",
    )
