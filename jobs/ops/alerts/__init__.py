"""Alerts: rules measured every minute by the schedulers, posted to Slack (and the pager) as they fire and resolve.

``rules`` says what is measured and when it breaches (domain apps add theirs
with ``register_alert_rule``: ``jobs`` never imports a domain app);
``evaluator`` measures each rule once per window across schedulers, keeps
one ``Alert`` row per breach (pending, firing, resolved) and sends each
message once per channel; ``notifier`` posts to the webhooks with bounded
retries. The case no scheduler can report, none running, is left to an
outside prober: ``/workers/health`` and ``docker/prometheus/alerts.yml``.
"""
