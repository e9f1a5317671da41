"""Alerts: rules measured every minute by the scheduler, posted to Slack when they fire and resolve.

``rules`` says what is measured and when it breaches; ``evaluator`` keeps one
``Alert`` row per breach (pending, firing, resolved) and sends each message
once; ``notifier`` posts to the webhooks with bounded retries; ``inputs`` is
where domain apps register measurements ``jobs`` cannot make itself (it
never imports a domain app).
"""
