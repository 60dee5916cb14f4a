"""End-to-end tests: the live server in a real browser."""
