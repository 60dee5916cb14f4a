"""Page modules of the dashboard: each defines ``router`` and optionally ``nav``."""
