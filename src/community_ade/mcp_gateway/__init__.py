"""The MCP server (``ade mcp`` over stdio, ``/mcp`` on ``ade serve``): an agent's
configuration as tools, its changes through governance (docs/mcp.md)."""
