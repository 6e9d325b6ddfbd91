"""Durability: state written by one `wrangler dev` survives a restart on the
same --persist-to directory (the Durable Objects' SQLite storage)."""

from __future__ import annotations

import json
import math
import time
import uuid

import pytest

from harness import RECORD_WRITE_INTERVAL_S
from harness import Api
from harness import costs
from harness import make_message
from harness import new_id
from harness import past_record_writes
from harness import uid_of

pytestmark = pytest.mark.worker_only  # upstream keeps everything in memory


def test_state_survives_a_restart_on_the_same_storage(exchange_factory, tmp_path) -> None:
    persist = tmp_path / 'persist'
    first = exchange_factory(persist_dir=persist)
    api = Api(first.url)

    src = api.new_mailbox(name='sender')
    dest = api.new_mailbox(name='receiver')
    dead = api.new_mailbox()
    assert api.terminate(dead).status_code == 200
    cls = f'bbmod_{uuid.uuid4().hex[:12]}.Durable'
    agent = api.new_mailbox('agent', agent=cls)

    sent = [
        make_message(src, dest, body='{"n": 0, "s": "é\\u00e9  "}'),
        make_message(src, dest, kind='response', body='{ "n" : 1 ,\t"s": "🦀" }'),
        make_message(src, dest, body='{"n": 2, "s": "\\"quoted\\""}'),
    ]
    for msg in sent:
        assert api.send(msg).status_code == 200
    assert api.heartbeat(dest).status_code == 200
    first.stop()

    second = exchange_factory(persist_dir=persist)
    api = Api(second.url)

    got = [api.recv_message(dest, 10) for _ in sent]
    assert got == sent  # order and bytes
    assert api.recv(dest, 0.5).status_code == 408

    assert api.status_value(src) == 'ACTIVE'
    assert api.status_value(dest) == 'ACTIVE'
    assert api.status_value(dead) == 'TERMINATED'
    assert api.status_value(new_id()) == 'MISSING'
    # The gravestone still holds.
    assert api.create(dead).status_code == 200
    assert api.status_value(dead) == 'TERMINATED'
    assert api.send(make_message(src, dead)).status_code == 419
    # Discovery and heartbeat survive too.
    assert api.discover_uids(cls, False) == [uid_of(agent)]
    hb = api.get_heartbeat(dest).json()['heartbeat']
    assert isinstance(hb, (int, float)) and hb >= 0
    # Requests in flight survive: the two requests to dest are answered with
    # the error response when dest is terminated now.
    assert api.terminate(dest).status_code == 200
    answers = [json.loads(api.recv_message(src, 10)) for _ in range(2)]
    assert sorted(a['header']['tag'] for a in answers) == sorted(
        json.loads(m)['header']['tag'] for m in (sent[0], sent[2])
    )
    assert all(a['body']['kind'] == 'academy-error-response' for a in answers)


def test_a_busy_senders_counts_are_seen_at_once_and_stored_within_a_second(
    exchange_factory, tmp_path,
) -> None:
    """A sender's counts are written at most once a second: the rest are seen
    by every request at once, and a timer stores them before the object can
    crash (stopping the exchange kills workerd, which keeps nothing in memory)."""
    persist = tmp_path / 'persist'
    first = exchange_factory(persist_dir=persist, vars={'EXCHANGE_COST_HEADERS': 1})
    api = Api(first.url)
    src, dest = api.new_mailbox(), api.new_mailbox()
    past_record_writes()
    sends = 20
    started = time.monotonic()
    rows = 0
    for n in range(sends):
        sent = api.send(make_message(src, dest, kind='request'))
        assert sent.status_code == 200, sent.text
        rows += costs(sent)[1]
        assert api.stats_value(src)['outgoing'] == n + 1
    seconds = time.monotonic() - started
    # One row per message, one for the destination's expiry alarm (set by the
    # first arrival; billed as a row), and the sender's record written by a
    # request at most once per second of the loop (the rest by the timer, in
    # no answer): not a row per count.
    most = sends + 1 + 1 + math.floor(seconds / RECORD_WRITE_INTERVAL_S)
    assert rows <= most, (rows, seconds)
    past_record_writes()
    first.stop()

    second = exchange_factory(persist_dir=persist)
    assert Api(second.url).stats_value(src)['outgoing'] == sends
