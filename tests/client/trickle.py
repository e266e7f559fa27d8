"""A raw HTTP/1.1 server on 127.0.0.1 that answers too slowly, for timeout tests.

It runs in daemon threads (one per connection) and speaks just enough HTTP:
it reads a request, then, by ``mode``:

* ``"headers"``: trickles the status line and headers, a byte every ``interval``;
* ``"body"``: sends the headers at once, then trickles the (JSON) body;
* ``"stall"``: reads the request and never answers.

A trickle lasts about ``lasts`` seconds (longer than any test waits; short
enough that a client ignoring its total timeout fails a test instead of
hanging it); a connection also ends when the client closes it or the server
stops.
``open`` counts the connections still open, so a test can check that a client
let go of every connection it gave up on.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from types import TracebackType


class TrickleServer:
    """See the module docstring. Use as a context manager."""

    def __init__(self, mode: str, interval: float = 0.02, lasts: float = 4.0) -> None:
        if mode not in ("headers", "body", "stall"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.interval = interval
        self.lasts = lasts
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        acceptor = threading.Thread(target=self._accept, name="trickle-accept", daemon=True)
        acceptor.start()
        self._threads.append(acceptor)

    def __enter__(self) -> TrickleServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def wait_all_closed(self, timeout: float = 2.0) -> bool:
        """True once every accepted connection has been closed (by either side)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self.open == 0:
                    return True
            time.sleep(0.01)
        return False

    # ------------------------------------------------------------------ server
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                if not self._read_request(conn):
                    return
                pad = int(self.lasts / self.interval)
                body = b'{"pad": "' + b"x" * (pad if self.mode == "body" else 0) + b'"}'
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                )
                if self.mode == "headers":
                    self._trickle(conn, head + b"X-Pad: " + b"y" * pad + b"\r\n\r\n" + body)
                elif self.mode == "body":
                    conn.sendall(head + b"\r\n")
                    self._trickle(conn, body)
                else:
                    self._wait_for_close(conn, time.monotonic() + self.lasts)
        except OSError:
            pass  # the client went away mid-write: that is what the tests want
        finally:
            with self._lock:
                self.open -= 1

    def _read_request(self, conn: socket.socket) -> bool:
        """Read one request (headers and a Content-Length body); False if the peer left."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._recv(conn)
            if not chunk:
                return False
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = self._recv(conn)
            if not chunk:
                return False
            rest += chunk
        return True

    def _recv(self, conn: socket.socket) -> bytes:
        """Wait for data; b"" when the peer closed or the server is stopping."""
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable:
                return conn.recv(65536)
        return b""

    def _trickle(self, conn: socket.socket, payload: bytes) -> None:
        for i in range(len(payload)):
            if self._stop.is_set():
                return
            readable, _, _ = select.select([conn], [], [], self.interval)
            if readable and not conn.recv(65536):
                return  # the client closed the connection
            conn.sendall(payload[i : i + 1])

    def _wait_for_close(self, conn: socket.socket, until: float) -> None:
        while time.monotonic() < until:
            readable, _, _ = select.select([conn], [], [], 0.05)
            if self._stop.is_set() or (readable and not conn.recv(65536)):
                return
