"""A TCP proxy on 127.0.0.1 that cuts listen streams mid-event.

It forwards every connection to ``target_port`` unchanged, except that a
response to ``GET /mailbox/listen`` is cut after ``cut_every`` events: the
proxy forwards the first half of the next event's ``data:`` line, then closes
both sides. The client sees a truncated chunked body, as when a connection
breaks in the network.

Threads only, bounded: each connection's pumps end when either side closes,
and ``close()`` stops accepting and shuts every open connection.
"""

from __future__ import annotations

import socket
import threading

DATA = b'\ndata: '


class CuttingProxy:
    def __init__(self, target_port: int, cut_every: int) -> None:
        self.target_port = target_port
        self.cut_every = cut_every
        self.cuts = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(('127.0.0.1', 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def close(self) -> None:
        self._closed.set()
        self._acceptor.join(timeout=5)
        self._server.close()
        with self._lock:
            for sock in list(self._open):
                _shut(sock)

    def __enter__(self) -> CuttingProxy:
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
                _shut(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            is_listen = threading.Event()
            threading.Thread(
                target=self._requests, args=(client, upstream, is_listen), daemon=True,
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, is_listen), daemon=True,
            ).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, is_listen: threading.Event) -> None:
        while chunk := _recv(client):
            # Requests on a kept-alive connection come one at a time, each
            # starting a read: a listen request may follow others.
            if chunk.startswith(b'GET /mailbox/listen'):
                is_listen.set()
            if not _send(upstream, chunk):
                break
        self._forget(client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, is_listen: threading.Event) -> None:
        events = 0
        while chunk := _recv(upstream):
            if is_listen.is_set():
                start = 0
                cut_at = None
                while (found := chunk.find(DATA, start)) >= 0:
                    events += 1
                    start = found + len(DATA)
                    if events > self.cut_every:
                        line_end = chunk.find(b'\n', start)
                        line_end = len(chunk) if line_end < 0 else line_end
                        cut_at = start + max(1, (line_end - start) // 2)
                        break
                if cut_at is not None:
                    _send(client, chunk[:cut_at])
                    with self._lock:
                        self.cuts += 1
                    break
            if not _send(client, chunk):
                break
        self._forget(client, upstream)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                _shut(sock)
                self._open.discard(sock)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b''


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
