"""Slack approvals (docs/notifications.md#slack): review requests posted with Block Kit,
decisions taken with buttons through the review engine, messages kept up to date."""
