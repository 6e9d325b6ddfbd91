"""A TCP proxy on 127.0.0.1 that cuts listen streams mid-event.

It forwards every connection to ``target_port`` unchanged, except that a
response to ``GET /mailbox/listen`` is cut after ``cut_every`` events: the
proxy forwards the first half of the next event's ``data:`` line, then closes
both sides. The client sees a truncated chunked body, as when a connection
breaks in the network.
"""

from __future__ import annotations

import socket
import threading

from tcp_proxy import recv
from tcp_proxy import send
from tcp_proxy import shut
from tcp_proxy import TcpProxy

DATA = b'\ndata: '


class CuttingProxy(TcpProxy):
    def __init__(self, target_port: int, cut_every: int) -> None:
        self.cut_every = cut_every
        self.cuts = 0
        super().__init__(target_port)

    def relay(self, client: socket.socket, upstream: socket.socket) -> None:
        is_listen = threading.Event()
        responses = threading.Thread(
            target=self._responses, args=(upstream, client, is_listen), daemon=True,
        )
        responses.start()
        self._requests(client, upstream, is_listen)
        responses.join()

    def _requests(self, client: socket.socket, upstream: socket.socket, is_listen: threading.Event) -> None:
        while chunk := recv(client):
            # Requests on a kept-alive connection come one at a time, each
            # starting a read: a listen request may follow others.
            if chunk.startswith(b'GET /mailbox/listen'):
                is_listen.set()
            if not send(upstream, chunk):
                break
        shut(client)
        shut(upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, is_listen: threading.Event) -> None:
        events = 0
        while chunk := recv(upstream):
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
                    send(client, chunk[:cut_at])
                    with self._lock:
                        self.cuts += 1
                    break
            if not send(client, chunk):
                break
        shut(client)
        shut(upstream)
