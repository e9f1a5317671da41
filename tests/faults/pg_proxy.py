"""A TCP proxy in front of PostgreSQL that can lose the reply to one statement.

Armed with a piece of SQL text, it forwards the client's statement that
carries it, lets PostgreSQL run and commit it (its CommandComplete, then
ReadyForQuery), and then closes both sides instead of forwarding that reply: the client sees its connection drop with
the work done, as when a network path or a pooler dies at the wrong moment.

It reads the protocol's framing only (a type byte and a length for every
message after start-up), so clients must connect without TLS or GSS
encryption (``sslmode=disable&gssencmode=disable``).
"""

from __future__ import annotations

import socket
import struct
import threading

from tests.services import free_port


class LosingProxy:
    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._trigger: bytes | None = None
        self._lock = threading.Lock()
        #: Replies dropped so far (each closed its connection).
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, user: str, database: str) -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}?sslmode=disable&gssencmode=disable"

    def lose_reply_to(self, sql_text: str) -> None:
        """Lose the reply to the next statement whose text contains ``sql_text`` (once)."""
        with self._lock:
            self._trigger = sql_text.encode()

    def close(self) -> None:
        self._closing.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            link = _Link(self, client, server)
            threading.Thread(target=link.client_to_server, daemon=True).start()
            threading.Thread(target=link.server_to_client, daemon=True).start()

    def _take_trigger(self, data: bytes) -> bool:
        with self._lock:
            if self._trigger is not None and self._trigger in data:
                self._trigger = None
                return True
        return False


class _Link:
    def __init__(self, proxy: LosingProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.losing = threading.Event()

    def close(self) -> None:
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def client_to_server(self) -> None:
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                if self.proxy._take_trigger(data):
                    self.losing.set()
                self.server.sendall(data)
        except OSError:
            pass
        finally:
            self.close()

    def server_to_client(self) -> None:
        buffer = b""
        executed = False
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                if not self.losing.is_set():
                    self.client.sendall(data)
                    continue
                # From the armed statement on, read message by message. Replies before its
                # execution (a Parse's, when the client prepares it first) go through; from its
                # CommandComplete ('C') everything is dropped, and once PostgreSQL is ready for
                # the next query ('Z') the statement has committed: cut the connection there.
                buffer += data
                while len(buffer) >= 5:
                    kind = buffer[:1]
                    (length,) = struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    message, buffer = buffer[: 1 + length], buffer[1 + length :]
                    executed = executed or kind == b"C"
                    if not executed:
                        self.client.sendall(message)
                    elif kind == b"Z":
                        with self.proxy._lock:
                            self.proxy.dropped += 1
                        return
        except OSError:
            pass
        finally:
            self.close()
