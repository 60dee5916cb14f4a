"""Agents (architecture §9): configuration and its versions, the catalogue, leases, health."""
