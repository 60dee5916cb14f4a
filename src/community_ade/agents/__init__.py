"""Agents (DESIGN §9): configuration and its versions, the catalogue, leases, health."""
