"""A TCP proxy on 127.0.0.1 that records what goes through it, for the OpenAPI check.

It forwards every byte unchanged, as soon as it arrives, and keeps a copy of each
connection's two directions (``Capture``); ``openapi_check`` later splits them into
requests and responses. Recording the wire, not a client library, covers every
client the suite runs: ``requests``, academy-py's aiohttp transport, and the
academy-py 0.1.0 client in its own process.

Either side closing ends the connection on both sides, so the exchange sees a
client go away as it would without the proxy.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from dataclasses import field

from tcp_proxy import recv
from tcp_proxy import send
from tcp_proxy import shut
from tcp_proxy import TcpProxy

# Bytes kept per direction of one connection. The rest still flows through; the
# check skips what it cannot see whole.
CAPTURE_LIMIT = 8 * 1024 * 1024


@dataclass
class Stream:
    """The bytes of one direction, up to ``CAPTURE_LIMIT``."""

    data: bytearray = field(default_factory=bytearray)
    overflowed: bool = False

    def keep(self, chunk: bytes) -> None:
        if self.overflowed or len(self.data) + len(chunk) > CAPTURE_LIMIT:
            self.overflowed = True
            return
        self.data += chunk


@dataclass
class Capture:
    """One client connection: what the client sent and what the exchange answered."""

    sent: Stream = field(default_factory=Stream)
    answered: Stream = field(default_factory=Stream)


class TrafficLog:
    """Every connection recorded this session, by every proxy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captures: list[Capture] = []

    def new_capture(self) -> Capture:
        capture = Capture()
        with self._lock:
            self._captures.append(capture)
        return capture

    def captures(self) -> list[Capture]:
        with self._lock:
            return list(self._captures)


class RecordingProxy(TcpProxy):
    def __init__(self, target_port: int, log: TrafficLog) -> None:
        self.log = log
        super().__init__(target_port)

    def relay(self, client: socket.socket, upstream: socket.socket) -> None:
        capture = self.log.new_capture()
        answers = threading.Thread(
            target=_pump,
            args=(upstream, client, capture.answered),
            daemon=True,
        )
        answers.start()
        _pump(client, upstream, capture.sent)
        answers.join()


def _pump(source: socket.socket, sink: socket.socket, copy: Stream) -> None:
    """Forwards and copies until either side ends, then ends both: the exchange
    sees a client go away as it would without the proxy."""
    while (data := recv(source)) and send(sink, data):
        copy.keep(data)
    shut(source)
    shut(sink)
