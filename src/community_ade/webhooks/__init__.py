"""Outbound webhooks, Standard Webhooks style (docs/notifications.md).

``rules`` is pure (retry schedule, verdicts, filters, signatures); ``store`` manages
subscriptions and the delivery log; ``outbox`` turns events of the events stream into
delivery rows in SQL; ``delivery`` claims and sends them (``run_webhooks``, the loop of
``ade serve`` and ``ade worker``).
"""
