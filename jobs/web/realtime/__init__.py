"""Live job progress over WebSocket (Django Channels on Redis pub/sub).

``publisher``: takes events from ``jobs.state.events`` and sends them to Redis from a
background thread, one pipelined round trip per batch. ``groups``: who hears
what (``job.<id>``, ``user.<owner>``, ``staff``). ``auth``: ``?ticket=`` (and deprecated ``?token=``) sign-in.
``consumers``: ``/ws/jobs/<id>/`` and ``/ws/jobs/``, a snapshot then events.
``routing``: their URLs. docs/architecture.md, *Live progress*, has the picture.
"""
