"""Telling people that something waits on them: preferences, e-mail (docs/notifications.md)."""
