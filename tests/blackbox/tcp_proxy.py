"""A TCP proxy on 127.0.0.1 in front of the exchange, for tests that must see or
change the bytes between a client and the Worker. A subclass says what happens
on each connection (``relay``); this class accepts, connects, and ends things.

Threads only, bounded: ``relay`` returns when either side closes, and
``close()`` stops accepting and shuts every open connection. A socket is closed
only once its connection's ``relay`` has returned, so no thread reads a closed
(and perhaps reused) descriptor.
"""

from __future__ import annotations

import socket
import threading
from typing import Self


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._connections: list[threading.Thread] = []
        self._server = socket.create_server(('127.0.0.1', 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """Carry one connection until either side ends it (in its own thread)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop accepting, end every open connection, and wait (bounded) for
        their relays to return."""
        self._closed.set()
        self._acceptor.join(timeout=5)
        self._server.close()
        with self._lock:
            for sock in self._open:
                shut(sock)
            connections = list(self._connections)
        for connection in connections:
            connection.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(('127.0.0.1', self.target_port), timeout=10)
            except OSError:
                client.close()  # as a refused connection would have been
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                # Each write goes out at once, as the client's own would: with
                # Nagle's algorithm a request's second write waits for the
                # server's delayed ACK (40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = threading.Thread(target=self._serve, args=(client, upstream), daemon=True)
            with self._lock:
                self._open.update((client, upstream))
                self._connections = [t for t in self._connections if t.is_alive()]
                self._connections.append(connection)
            connection.start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            self.relay(client, upstream)
        finally:
            with self._lock:
                self._open.difference_update((client, upstream))
            client.close()
            upstream.close()


def recv(sock: socket.socket) -> bytes:
    """The next bytes, or b'' once the socket has ended (or failed)."""
    try:
        return sock.recv(65536)
    except OSError:
        return b''


def send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def shut(sock: socket.socket) -> None:
    """Ends both directions; a thread blocked reading it wakes up."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
