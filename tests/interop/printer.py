"""A raw-TCP label printer for the tests: a local listener on a free port, as a Zebra listens on 9100."""

from __future__ import annotations

import socket
import threading


class Printer:
    """A raw-TCP "port 9100" printer: takes each connection's bytes until the sender closes."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
                self.received.append(b"".join(chunks))

    def close(self) -> None:
        self.server.close()
