"""The ASGI entry point: Django for HTTP (static files first), Channels consumers for WebSocket (``/ws/...``).

HTTP request bodies over their cap get 413 before they are read
(``config.body_limits``, in front of everything), and uvicorn's log lines show
query strings with their values redacted (``config.log_redaction``).
"""

from __future__ import annotations

import os
import sys

from django.core.asgi import get_asgi_application

from config.modes import START_REFUSALS, refusal_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set Django up before importing consumers (they import models).
try:
    django_asgi_app = get_asgi_application()
except START_REFUSALS as exc:
    # One line naming the variable, and uvicorn's own start-up failure code (3):
    # with --workers N its parent then stops instead of restarting the worker forever.
    sys.stderr.write(refusal_line(exc) + "\n")
    sys.exit(3)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config import log_redaction  # noqa: E402
from config.body_limits import BodyLimit  # noqa: E402
from config.static_files import serve_static  # noqa: E402
from jobs.web.realtime.auth import websocket_application  # noqa: E402
from jobs.web.realtime.routing import websocket_urlpatterns  # noqa: E402

# uvicorn has set its loggers up by now (before it imports this module, in each worker process).
log_redaction.install()

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(serve_static(django_asgi_app)),
        "websocket": websocket_application(URLRouter(websocket_urlpatterns)),
    }
)
