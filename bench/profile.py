"""Where the worker's CPU goes: workerd CPU per request, by kind of request.

    python bench/profile.py [--requests N] [--build DIR] [--cpu-profile KIND ...]

Serves the built Worker from workerd directly (as the benchmark's ``workerd``
target), then runs sequential loops of raw HTTP requests over one keep-alive
connection and divides workerd's CPU (``/proc``) by the number of requests (a
second column adds the node process that launched it and relays its log lines).
Each kind isolates one part of the path:

- ``unrouted``: a path no route has (404): the Worker alone, no object;
- ``status``: ``GET /mailbox`` of an existing mailbox: one object call, no write;
- ``status-missing``: the same for a mailbox never created;
- ``send``: ``PUT /message`` to an existing mailbox (left queued);
- ``receive``: ``GET /message`` of those queued messages;
- ``self-send+receive`` and ``send+receive``: one delivered message end to end,
  to the sender's own mailbox and to another's;
- ``send+listen``: one message sent to another's mailbox and read from the
  listen stream open on it (rows include the stream's confirmations, counted
  with ``x-exchange-isolate-rows-written`` where the build reports it).

``--build DIR`` profiles another build (e.g. of an earlier commit) instead of
``build/``.

Prints one table; nothing is written. Loops are bounded by ``--requests`` and
every request has a timeout.

``--cpu-profile KIND`` (repeatable) shows where that CPU goes inside the
Worker's isolate instead: workerd is started with its DevTools inspector open,
and for each KIND, after the warm-up and ``WARM_UP`` more requests of that kind,
a V8 sampling CPU profile (``--sampling-interval-us``) of the isolate is recorded
over ``--requests`` requests of it (``cpu_profile.py``). Each profile is written
to ``--profile-dir`` as ``cpu-KIND.cpuprofile`` (DevTools' Performance panel
opens it) and summarized: self time per group of functions, and the top
``--top`` functions by self and by inclusive time. The CPU per request printed
with it includes the profiler's own cost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / 'tests' / 'blackbox'))

import cpu_profile  # noqa: E402
import harness  # noqa: E402
import requests  # noqa: E402
import targets  # noqa: E402

KINDS = (
    'unrouted', 'status', 'status-missing', 'send', 'receive', 'self-send+receive', 'send+receive', 'send+listen',
)
# workerd runs a new Worker slowly for its first few hundred requests: this
# many run first, and again of each kind before its CPU profile.
WARM_UP = 300


class Client:
    """One keep-alive HTTP connection to 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        self.costs = {'calls': 0, 'rows': 0}

    def call(self, method: str, path: str, body: object | None = None, ok=(200,)) -> bytes:
        payload = None if body is None else json.dumps(body)
        headers = {'content-type': 'application/json'} if payload else {}
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status not in ok:
            raise RuntimeError(f'{method} {path}: {response.status} {data[:200]!r}')
        self.costs['calls'] += int(response.getheader('x-exchange-object-calls') or 0)
        self.costs['rows'] += int(response.getheader('x-exchange-rows-written') or 0)
        return data




class Listener:
    """A listen stream on one mailbox, read an event at a time."""

    def __init__(self, url: str, mailbox: str) -> None:
        self.mailbox = mailbox
        response = requests.get(
            url + '/mailbox/listen',
            json={'mailbox': mailbox, 'timeout': 60},
            stream=True,
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(f'listen: {response.status_code} {response.text}')
        self.stream = harness.SSEStream(response)

    def next(self) -> None:
        if self.stream.next_event() is None:
            raise RuntimeError('the listen stream ended')

    def isolate_rows(self, client: Client) -> int | None:
        """Rows written by the Worker's isolate so far (None: not reported)."""
        client.connection.request(
            'GET', '/mailbox', body=json.dumps({'mailbox': self.mailbox}),
            headers={'content-type': 'application/json'},
        )
        response = client.connection.getresponse()
        response.read()
        value = response.getheader('x-exchange-isolate-rows-written')
        return None if value is None else int(value)

    def close(self) -> None:
        self.stream.close()


def measure(target: targets.Target, client: Client, requests: int, step) -> dict:
    client.costs = {'calls': 0, 'rows': 0}
    before, started = target.cpu_seconds_by_program(), time.perf_counter()
    for _ in range(requests):
        step()
    wall = time.perf_counter() - started
    after = target.cpu_seconds_by_program()
    workerd = after.get('workerd', 0.0) - before.get('workerd', 0.0)
    with_node = sum(after.values()) - sum(before.values())
    return {
        'cpu_ms': 1000 * workerd / requests,
        'with_node_ms': 1000 * with_node / requests,
        'wall_ms': 1000 * wall / requests,
        'calls': client.costs['calls'] / requests,
        'rows': client.costs['rows'] / requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--requests', type=int, default=400)
    parser.add_argument('--build', type=Path, help='a build directory other than build/')
    parser.add_argument(
        '--cpu-profile', action='append', choices=KINDS, metavar='KIND',
        help='record a CPU profile of the isolate over this kind of request (repeatable)',
    )
    parser.add_argument('--profile-dir', type=Path, default=Path(), help='where cpu-KIND.cpuprofile go')
    parser.add_argument('--sampling-interval-us', type=int, default=100)
    parser.add_argument('--top', type=int, default=30, help='functions listed per profile table')
    args = parser.parse_args()
    n = args.requests
    start = targets.workerd_inspected if args.cpu_profile else targets.workerd_direct

    with tempfile.TemporaryDirectory(prefix='exchange-profile-') as tmp:
        build = Path(tmp) / 'build'
        targets.snapshot_build(build, args.build or targets.REPO / 'build')
        target = start(Path(tmp), build).start()
        try:
            client = Client(target.processes[-1].port)
            me, other, listened = harness.new_id(), harness.new_id(), harness.new_id()
            for entity in (me, other, listened):
                client.call('POST', '/mailbox', {'mailbox': entity})

            def send(dest: str) -> None:
                client.call('PUT', '/message', {'message': harness.make_message(me, dest)})

            def receive(mailbox: str) -> None:
                client.call('GET', '/message', {'mailbox': mailbox, 'timeout': 5})

            listener = Listener(target.url, listened)

            def send_and_listen() -> None:
                send(listened)
                listener.next()

            kinds = {
                'unrouted': lambda: client.call('GET', '/nowhere', ok=(404,)),
                'status': lambda: client.call('GET', '/mailbox', {'mailbox': me}),
                'status-missing': lambda: client.call(
                    'GET', '/mailbox', {'mailbox': harness.new_id()},
                ),
                'send': lambda: send(other),
                'receive': lambda: receive(other),
                'self-send+receive': lambda: (send(me), receive(me)),
                'send+receive': lambda: (send(other), receive(other)),
                'send+listen': send_and_listen,
            }
            for _ in range(WARM_UP):
                send(other), receive(other)
            rows, profiles = {}, {}
            for kind in args.cpu_profile or ():
                for _ in range(WARM_UP):
                    kinds[kind]()

                def run(kind: str = kind) -> None:
                    rows[kind] = measure(target, client, n, kinds[kind])

                profiles[kind] = cpu_profile.record(
                    target.processes[-1].inspector_port, run, args.sampling_interval_us,
                )
            for kind, step in () if args.cpu_profile else kinds.items():
                isolate_rows = listener.isolate_rows(client)
                rows[kind] = measure(target, client, n, step)
                if kind == 'send+listen' and isolate_rows is not None:
                    written = listener.isolate_rows(client) - isolate_rows
                    rows[kind]['rows'] = written / n
            listener.close()
        finally:
            target.stop()

    if profiles:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    for kind, profile in profiles.items():
        path = args.profile_dir / f'cpu-{kind}.cpuprofile'
        path.write_text(json.dumps(profile))
        print(f'\n=== {kind}: {rows[kind]["cpu_ms"]:.2f} ms workerd CPU per request while profiled; {path}')
        cpu_profile.print_summary(cpu_profile.summarize(profile), args.top, n)
    if profiles:
        return 0
    print(f'workerd CPU per request (or per delivered message), {n} sequential requests each')
    print('(cpu ms: workerd; + node: with the node process that launched it)')
    print(f'{"kind":<20} {"cpu ms":>8} {"+ node":>8} {"wall ms":>8} {"obj calls":>10} {"rows":>6}')
    for kind, row in rows.items():
        print(
            f'{kind:<20} {row["cpu_ms"]:>8.2f} {row["with_node_ms"]:>8.2f} {row["wall_ms"]:>8.2f} '
            f'{row["calls"]:>10.2f} {row["rows"]:>6.2f}',
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
