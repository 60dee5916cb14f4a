"""Coding-agent hooks (``ade hook``): a harness's tool calls reviewed in Community ADE.
Standard library only: see ``gate.py``."""
