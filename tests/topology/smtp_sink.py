"""An SMTP sink for the data host: ``python -m tests.topology.smtp_sink <address> <port> <out.jsonl>``.

aiosmtpd accepts every message and appends one JSON line per message: the
client's address and port (one port per SMTP connection), the recipients and
the time. The test reads the file to count what each host sent and which
recipient got a message twice.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class RecordingHandler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        record = {
            "peer": list(session.peer[:2]),
            "rcpt": list(envelope.rcpt_tos),
            "at": time.time(),
        }
        with self._lock, self.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return "250 OK"


def main(argv: list[str]) -> int:
    address, port, out = argv[0], int(argv[1]), Path(argv[2])
    controller = Controller(RecordingHandler(out), hostname=address, port=port)
    controller.start()
    print(f"smtp sink on {address}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
