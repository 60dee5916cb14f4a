"""The HTTP API (FastAPI lives only here and in ``dashboard/``)."""
