"""Stored secrets and the references payloads use instead of them (docs/secrets.md).

``references`` is pure: what a reference looks like, which places of a payload must hold
one, how references are shown and resolved. ``keys`` turns the configured key into a
cipher; ``store`` keeps name → ciphertext in the database and reveals values to a worker.
"""
