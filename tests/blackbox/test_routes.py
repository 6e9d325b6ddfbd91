"""Every route and status code, over raw HTTP (no academy client)."""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import Api
from harness import make_message
from harness import MESSAGE_SIZE_LIMIT
from harness import new_id
from harness import status_answer
from harness import tag_of
from harness import uid_of

worker_only = pytest.mark.worker_only


def _mro(*classes: str) -> tuple[str, ...]:
    """Fully qualified class names in a module nobody else uses."""
    module = f'bbmod_{uuid.uuid4().hex[:12]}'
    return tuple(f'{module}.{c}' for c in classes)


# ------------------------------------------------------------------ mailboxes


def test_status_of_a_never_created_mailbox_is_missing(api: Api) -> None:
    r = api.status(new_id())
    assert r.status_code == 200, r.text
    assert r.json() == status_answer('MISSING')


def test_mailbox_goes_from_missing_to_active_to_terminated(api: Api) -> None:
    mid = new_id()
    assert api.status_value(mid) == 'MISSING'
    assert api.create(mid).status_code == 200
    assert api.status_value(mid) == 'ACTIVE'
    assert api.terminate(mid).status_code == 200
    assert api.status_value(mid) == 'TERMINATED'


def test_agent_mailbox_has_the_same_lifecycle(api: Api) -> None:
    (cls,) = _mro('Solo')
    mid = new_id('agent', name='solo')
    assert api.create(mid, agent=cls).status_code == 200
    assert api.status_value(mid) == 'ACTIVE'
    assert api.terminate(mid).status_code == 200
    assert api.status_value(mid) == 'TERMINATED'


def test_create_is_idempotent_and_keeps_queued_messages(api: Api) -> None:
    src = api.new_mailbox()
    mid = api.new_mailbox()
    msg = make_message(src, mid)
    assert api.send(msg).status_code == 200
    r = api.create(mid)
    assert r.status_code == 200, r.text
    assert api.status_value(mid) == 'ACTIVE'
    assert tag_of(api.recv_message(mid, 5)) == tag_of(msg)


def test_create_after_terminate_stays_terminated(api: Api) -> None:
    src = api.new_mailbox()
    mid = api.new_mailbox()
    assert api.terminate(mid).status_code == 200
    r = api.create(mid)
    assert r.status_code == 200, r.text
    assert api.status_value(mid) == 'TERMINATED'
    r = api.send(make_message(src, mid))
    assert r.status_code == 419, r.text


def test_terminate_is_idempotent(api: Api) -> None:
    mid = api.new_mailbox()
    for _ in range(3):
        r = api.terminate(mid)
        assert r.status_code == 200, r.text
    assert api.status_value(mid) == 'TERMINATED'


def test_terminate_of_an_unknown_mailbox_answers_200(api: Api) -> None:
    r = api.terminate(new_id())
    assert r.status_code == 200, r.text
    r = api.terminate(new_id('agent'))
    assert r.status_code == 200, r.text


def test_json_answers_carry_a_json_content_type(api: Api) -> None:
    # aiohttp's ClientResponse.json() (the academy client) refuses any
    # other content type.
    (cls,) = _mro('Typed')
    mid = api.new_mailbox()
    aid = api.new_mailbox('agent', agent=cls)
    assert api.send(make_message(mid, aid)).status_code == 200
    answers = {
        'status': api.status(mid),
        'recv': api.recv(aid, 5),
        'discover': api.discover(cls, False),
        'shares': api.shares(mid),
        'heartbeat': api.get_heartbeat(mid),
        'stats': api.stats(mid),
    }
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.status_code, r.text)
        ctype = r.headers.get('content-type', '')
        assert ctype.split(';')[0].strip() == 'application/json', (name, ctype)
        r.json()


# ------------------------------------------------------------------- messages


def test_messages_are_received_in_fifo_order(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    sent = [make_message(src, dest, body=f'{{"n": {i}}}') for i in range(6)]
    for msg in sent:
        r = api.send(msg)
        assert r.status_code == 200, r.text
    got = [api.recv_message(dest, 5) for _ in sent]
    assert [tag_of(m) for m in got] == [tag_of(m) for m in sent]
    assert [json.loads(m)['body'] for m in got] == [{'n': i} for i in range(6)]
    # Each message is delivered once: the mailbox is now empty.
    assert api.recv(dest, 0.5).status_code == 408


def test_received_message_keeps_header_and_body(api: Api) -> None:
    src = api.new_mailbox(name='alice')
    dest = api.new_mailbox(name='bob')
    label = str(uuid.uuid4())
    body = '{"kind": "action-request", "action": "go", "pargs": "YWJj", "é": "\\u00e9"}'
    msg = make_message(src, dest, label=label, body=body)
    assert api.send(msg).status_code == 200
    got = json.loads(api.recv_message(dest, 5))
    sent = json.loads(msg)
    assert got['header']['src'] == json.loads(src)
    assert got['header']['dest'] == json.loads(dest)
    for key in ('tag', 'label', 'kind', 'protocol_version', 'academy_version'):
        assert got['header'][key] == sent['header'][key], key
    assert got['body'] == sent['body']


@worker_only  # upstream re-serializes (Message.model_dump_json)
def test_message_text_round_trips_byte_for_byte(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    tag = str(uuid.uuid4())
    # Hand-built: odd spacing, a tab, CRLF between tokens, raw and escaped
    # non-ASCII, escaped quotes/backslashes/controls, number formats.
    msg = (
        '{ "header" :{"src": ' + src + ' ,\t"dest":' + dest + ',\r\n'
        '  "tag":"' + tag + '", "label" : null, "kind": "request",'
        '"protocol_version":"1.1",   "academy_version": "1.0.0"},  '
        '"body": {"x": "é\\u00e9  ", "q": "\\"\\\\/\\n\\t", "emoji": "🦀",'
        ' "n": 1.50, "e": 1E3, "kind": "ping-request"}  }'
    )
    assert api.send(msg).status_code == 200
    assert api.recv_message(dest, 5) == msg


def test_send_to_unknown_mailbox_is_404(api: Api) -> None:
    src = api.new_mailbox()
    r = api.send(make_message(src, new_id()))
    assert r.status_code == 404
    assert r.text == 'Unknown mailbox ID'


def test_send_to_terminated_mailbox_is_419(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    api.terminate(dest)
    r = api.send(make_message(src, dest))
    assert r.status_code == 419
    assert r.text == 'Mailbox was closed'


def test_recv_on_unknown_mailbox_is_404(api: Api) -> None:
    r = api.recv(new_id(), 1)
    assert r.status_code == 404
    assert r.text == 'Unknown mailbox ID'


def test_recv_on_terminated_mailbox_is_419(api: Api) -> None:
    mid = api.new_mailbox()
    api.terminate(mid)
    r = api.recv(mid, 1)
    assert r.status_code == 419
    assert r.text == 'Mailbox was closed'


def test_terminating_drops_queued_messages(api: Api) -> None:
    src = api.new_mailbox()
    mid = api.new_mailbox()
    assert api.send(make_message(src, mid, kind='response')).status_code == 200
    api.terminate(mid)
    assert api.recv(mid, 1).status_code == 419


def test_recv_on_empty_mailbox_times_out_with_408(api: Api) -> None:
    mid = api.new_mailbox()
    t0 = time.monotonic()
    r = api.recv(mid, 0.5)
    elapsed = time.monotonic() - t0
    assert r.status_code == 408, r.text
    assert r.text == 'Request timeout'
    assert 0.4 <= elapsed < 5, elapsed


@pytest.mark.parametrize('timeout', [0, -1, -0.5, 61, 3600])
def test_recv_with_out_of_range_timeout_is_400(api: Api, timeout: float) -> None:
    mid = api.new_mailbox()
    t0 = time.monotonic()
    r = api.recv(mid, timeout, http_timeout=10)
    assert r.status_code == 400, r.text
    assert r.text.startswith('Invalid timeout'), r.text
    assert time.monotonic() - t0 < 5


def test_recv_accepts_the_maximum_timeout(api: Api) -> None:
    src = api.new_mailbox()
    mid = api.new_mailbox()
    msg = make_message(src, mid)
    api.send(msg)
    r = api.recv(mid, 60)
    assert r.status_code == 200, r.text
    assert tag_of(r.json()['message']) == tag_of(msg)


def test_oversized_message_is_413(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    msg = make_message(src, dest, body='{"x": "' + 'a' * (600 * 1024) + '"}')
    r = api.send(msg)
    assert r.status_code == 413, r.text[:200]
    m = re.fullmatch(r'Message of size (\d+) larger than limit (\d+)\.', r.text)
    assert m, r.text[:200]
    size, limit = int(m.group(1)), int(m.group(2))
    assert limit == MESSAGE_SIZE_LIMIT
    assert size > limit
    assert abs(size - len(msg.encode())) < 1024, (size, len(msg))
    # Nothing was queued.
    assert api.recv(dest, 0.5).status_code == 408


def test_message_just_under_the_limit_is_delivered(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    filler = 'b' * (MESSAGE_SIZE_LIMIT - 4096)
    msg = make_message(src, dest, body='{"x": "' + filler + '"}')
    assert len(msg.encode()) < MESSAGE_SIZE_LIMIT
    r = api.send(msg)
    assert r.status_code == 200, r.text[:200]
    got = json.loads(api.recv_message(dest, 5))
    assert got['body']['x'] == filler


def test_long_poll_wakes_up_when_a_message_arrives(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    msg = make_message(src, dest)
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        fut = pool.submit(Api(api.url).recv, dest, 10)
        time.sleep(0.5)
        assert api.send(msg).status_code == 200
        r = fut.result(timeout=15)
        elapsed = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert tag_of(r.json()['message']) == tag_of(msg)
    assert elapsed < 5, elapsed


def test_terminate_wakes_a_waiting_receiver_with_419(api: Api) -> None:
    mid = api.new_mailbox()
    with ThreadPoolExecutor(1) as pool:
        t0 = time.monotonic()
        fut = pool.submit(Api(api.url).recv, mid, 10)
        time.sleep(0.5)
        assert api.terminate(mid).status_code == 200
        r = fut.result(timeout=15)
        elapsed = time.monotonic() - t0
    assert r.status_code == 419, r.text
    assert r.text == 'Mailbox was closed'
    assert elapsed < 5, elapsed


@pytest.mark.parametrize('received', [False, True], ids=['queued', 'received'])
def test_terminate_answers_requests_in_flight(api: Api, received: bool) -> None:
    a = api.new_mailbox(name='requester')
    b = api.new_mailbox('agent', agent=_mro('Worker')[0], name='worker')
    tag, label = str(uuid.uuid4()), str(uuid.uuid4())
    request = make_message(
        a,
        b,
        tag=tag,
        label=label,
        body='{"kind": "action-request", "action": "work", "serialization": "json"}',
    )
    assert api.send(request).status_code == 200
    if received:
        assert tag_of(api.recv_message(b, 5)) == tag
    assert api.terminate(b).status_code == 200

    response = api.recv_message(a, 5)
    msg = json.loads(response)
    header, body = msg['header'], msg['body']
    assert header['tag'] == tag
    assert header['label'] == label
    assert header['kind'] == 'response'
    assert uid_of(header['src']) == uid_of(b)
    assert header['src']['role'] == 'agent'
    assert uid_of(header['dest']) == uid_of(a)
    assert header['dest']['role'] == 'user'
    assert body['kind'] == 'academy-error-response'
    assert body['error_code'] == 0
    assert uid_of(body['mailbox_id']) == uid_of(b)
    assert body['mailbox_id']['role'] == 'agent'
    # Exactly one such response.
    assert api.recv(a, 0.5).status_code == 408

    # The real client decodes it into MailboxTerminatedError.
    from academy.exception import MailboxTerminatedError
    from academy.message import Message

    decoded = Message.model_validate_json(response)
    exc = decoded.get_body().get_exception()
    assert isinstance(exc, MailboxTerminatedError)


def test_terminate_does_not_answer_requests_already_answered(api: Api) -> None:
    a = api.new_mailbox()
    b = api.new_mailbox()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    api.send(make_message(a, b, tag=first))
    api.send(make_message(a, b, tag=second))
    assert tag_of(api.recv_message(b, 5)) == first
    reply = make_message(b, a, kind='response', tag=first, body='{"kind": "success-response"}')
    assert api.send(reply).status_code == 200
    api.terminate(b)

    got = [json.loads(api.recv_message(a, 5)) for _ in range(2)]
    assert [g['header']['tag'] for g in got] == [first, second]
    assert got[0]['body'] == {'kind': 'success-response'}
    assert got[1]['body']['kind'] == 'academy-error-response'
    assert api.recv(a, 0.5).status_code == 408


def test_terminate_skips_requesters_that_are_gone(api: Api) -> None:
    a = api.new_mailbox()
    b = api.new_mailbox()
    api.send(make_message(a, b))
    api.terminate(a)
    r = api.terminate(b)
    assert r.status_code == 200, r.text
    assert api.status_value(b) == 'TERMINATED'


def test_responses_are_not_answered_on_terminate(api: Api) -> None:
    a = api.new_mailbox()
    b = api.new_mailbox()
    api.send(make_message(a, b, kind='response', body='{"kind": "success-response"}'))
    api.terminate(b)
    assert api.recv(a, 0.5).status_code == 408


# ------------------------------------------------------------------ discovery


def test_discover_exact_class_vs_subclasses(api: Api) -> None:
    derived, base = _mro('Derived', 'Base')
    d = api.new_mailbox('agent', agent=f'{derived},{base}')
    b = api.new_mailbox('agent', agent=base)
    assert api.discover_uids(base, False) == [uid_of(b)]
    assert api.discover_uids(base, True) == [uid_of(d), uid_of(b)]
    assert api.discover_uids(derived, False) == [uid_of(d)]
    assert api.discover_uids(derived, True) == [uid_of(d)]


def test_discover_returns_only_active_agents(api: Api) -> None:
    (cls,) = _mro('Ephemeral')
    x = api.new_mailbox('agent', agent=cls)
    y = api.new_mailbox('agent', agent=cls)
    assert api.discover_uids(cls, False) == [uid_of(x), uid_of(y)]
    api.terminate(x)
    assert api.discover_uids(cls, False) == [uid_of(y)]
    assert api.discover_uids(cls, True) == [uid_of(y)]


def test_discover_preserves_registration_order(api: Api) -> None:
    (cls,) = _mro('Ordered')
    ids = [api.new_mailbox('agent', agent=cls, name=f'n{i}') for i in range(3)]
    assert api.discover_uids(cls, False) == [uid_of(i) for i in ids]


def test_discover_with_no_match_is_empty_string(api: Api) -> None:
    (cls,) = _mro('Nobody')
    r = api.discover(cls, True)
    assert r.status_code == 200, r.text
    assert r.json() == {'agent_ids': ''}


def test_discover_ignores_agent_field_on_user_mailboxes(api: Api) -> None:
    (cls,) = _mro('NotAnAgent')
    api.new_mailbox('user', agent=cls)
    assert api.discover_uids(cls, True) == []


def test_discover_does_not_match_class_name_prefixes(api: Api) -> None:
    (cls,) = _mro('Prefix')
    api.new_mailbox('agent', agent=cls + 'Longer')
    assert api.discover_uids(cls, True) == []
    assert api.discover_uids(cls.rsplit('.', 1)[0], True) == []


def test_created_twice_agent_is_listed_once(api: Api) -> None:
    (cls,) = _mro('Twice')
    aid = new_id('agent')
    assert api.create(aid, agent=cls).status_code == 200
    assert api.create(aid, agent=cls).status_code == 200
    assert api.discover_uids(cls, False) == [uid_of(aid)]


@worker_only
def test_behavior_is_the_older_name_of_agent_and_agent_wins(api: Api) -> None:
    derived, base, other = _mro('Derived', 'Base', 'Other')
    older = new_id('agent')
    r = api.request('POST', '/mailbox', json={'mailbox': older, 'behavior': f'{derived},{base}'})
    assert r.status_code == 200, r.text
    both = new_id('agent')
    r = api.request('POST', '/mailbox', json={'mailbox': both, 'agent': other, 'behavior': base})
    assert r.status_code == 200, r.text

    def discover(
        body: dict[str, object] | None = None,
        query: dict[str, str] | None = None,
    ) -> list[str]:
        r = api.request('GET', '/discover', json=body, params=query)
        assert r.status_code == 200, r.text
        return [x for x in r.json()['agent_ids'].split(',') if x]

    # The older name alone, in the body and in the query.
    assert discover({'behavior': base, 'allow_subclasses': True}) == [uid_of(older)]
    assert discover(query={'behavior': derived, 'allow_subclasses': 'false'}) == [uid_of(older)]
    # Both names: `agent` wins, on create and on discover.
    assert discover({'behavior': base, 'allow_subclasses': False}) == []
    assert discover({'agent': other, 'behavior': base, 'allow_subclasses': False}) == [uid_of(both)]
    assert discover(query={'agent': other, 'behavior': base, 'allow_subclasses': 'true'}) == [
        uid_of(both),
    ]


# -------------------------------------------------------------------- sharing


def test_shares_of_a_new_mailbox_are_empty(api: Api) -> None:
    mid = api.new_mailbox()
    r = api.shares(mid)
    assert r.status_code == 200, r.text
    assert r.json() == {'group_ids': []}


def test_sharing_with_a_group_the_client_is_not_in_is_forbidden(api: Api) -> None:
    # Without authentication the client belongs to no group; upstream only
    # lets an owner share with a group it belongs to.
    mid = api.new_mailbox()
    r = api.share(mid, str(uuid.uuid4()))
    assert r.status_code == 403, r.text
    assert r.text == 'Incorrect permissions'
    assert api.shares(mid).json() == {'group_ids': []}


@pytest.mark.parametrize('route', ['share', 'shares', 'unshare'])
def test_share_routes_on_unknown_mailbox_are_404(api: Api, route: str) -> None:
    group = str(uuid.uuid4())
    mid = new_id()
    r = {
        'share': lambda: api.share(mid, group),
        'shares': lambda: api.shares(mid),
        'unshare': lambda: api.unshare(mid, group),
    }[route]()
    assert r.status_code == 404, r.text
    assert r.text == 'Unknown mailbox ID'


@pytest.mark.parametrize('route', ['share', 'shares', 'unshare'])
def test_share_routes_on_terminated_mailbox_are_419(api: Api, route: str) -> None:
    group = str(uuid.uuid4())
    mid = api.new_mailbox()
    api.terminate(mid)
    r = {
        'share': lambda: api.share(mid, group),
        'shares': lambda: api.shares(mid),
        'unshare': lambda: api.unshare(mid, group),
    }[route]()
    assert r.status_code == 419, r.text
    assert r.text == 'Mailbox was closed'


@worker_only  # upstream: KeyError on a never-shared mailbox -> 400
def test_unsharing_a_group_never_shared_is_a_no_op(api: Api) -> None:
    mid = api.new_mailbox()
    r = api.unshare(mid, str(uuid.uuid4()))
    assert r.status_code == 200, r.text
    assert api.shares(mid).json() == {'group_ids': []}


# ------------------------------------------------------------------ heartbeat


def test_heartbeat_is_null_before_the_first_beat(api: Api) -> None:
    mid = api.new_mailbox()
    r = api.get_heartbeat(mid)
    assert r.status_code == 200, r.text
    assert r.json() == {'heartbeat': None}


def test_heartbeat_reports_seconds_since_last_beat(api: Api) -> None:
    mid = api.new_mailbox()
    assert api.heartbeat(mid).status_code == 200
    hb = api.get_heartbeat(mid).json()['heartbeat']
    assert isinstance(hb, (int, float)) and not isinstance(hb, bool)
    assert 0 <= hb < 5, hb
    time.sleep(0.6)
    later = api.get_heartbeat(mid).json()['heartbeat']
    assert later >= hb + 0.4, (hb, later)
    assert api.heartbeat(mid).status_code == 200
    fresh = api.get_heartbeat(mid).json()['heartbeat']
    assert 0 <= fresh < later, (fresh, later)


def test_heartbeat_of_unknown_mailbox_is_404(api: Api) -> None:
    r = api.get_heartbeat(new_id())
    assert r.status_code == 404, r.text
    assert r.text == 'Unknown mailbox ID'


def test_heartbeat_of_terminated_mailbox_is_419(api: Api) -> None:
    mid = api.new_mailbox()
    api.heartbeat(mid)
    api.terminate(mid)
    r = api.get_heartbeat(mid)
    assert r.status_code == 419, r.text
    assert r.text == 'Mailbox was closed'


# ---------------------------------------------------------------------- stats


def test_stats_track_requests_through_their_life(api: Api) -> None:
    a = api.new_mailbox(name='client')
    b = api.new_mailbox('agent', agent=_mro('Counted')[0], name='server')
    zero = {'incoming': 0, 'outgoing': 0, 'completed': 0, 'in_progress': 0, 'queued': 0}
    assert api.stats_value(b) == zero

    tags = [str(uuid.uuid4()) for _ in range(2)]
    for t in tags:
        assert api.send(make_message(a, b, tag=t)).status_code == 200
    assert api.stats_value(b) == zero | {'incoming': 2, 'queued': 2}
    assert api.stats_value(a)['outgoing'] == 2

    assert tag_of(api.recv_message(b, 5)) == tags[0]
    assert api.stats_value(b) == zero | {'incoming': 2, 'queued': 1, 'in_progress': 1}

    reply = make_message(b, a, kind='response', tag=tags[0], body='{"kind": "success-response"}')
    assert api.send(reply).status_code == 200
    assert api.stats_value(b) == zero | {'incoming': 2, 'queued': 1, 'completed': 1}
    sa = api.stats_value(a)
    assert sa['outgoing'] == 2
    assert sa['queued'] == 1  # the response waits in A's mailbox
    assert sa['incoming'] == 0  # responses are not requests

    assert tag_of(api.recv_message(b, 5)) == tags[1]
    assert api.stats_value(b) == zero | {'incoming': 2, 'in_progress': 1, 'completed': 1}


def test_stats_ignore_responses_without_a_request(api: Api) -> None:
    a = api.new_mailbox()
    b = api.new_mailbox()
    api.send(make_message(b, a, kind='response', body='{"kind": "success-response"}'))
    sb = api.stats_value(b)
    assert sb['completed'] == 0 and sb['outgoing'] == 0
    sa = api.stats_value(a)
    assert sa == {'incoming': 0, 'outgoing': 0, 'completed': 0, 'in_progress': 0, 'queued': 1}


# ------------------------------------------------------------------ bad input


def _bad_inputs() -> list:
    good = new_id()
    src, dest = new_id(), new_id()
    no_header = json.dumps({'message': '{"body": {"kind": "ping-request"}}'})
    p = pytest.param
    return [
        # (method, path, request kwargs, exact status or None)
        p('POST', '/mailbox', {'data': b'not json', 'headers': {'content-type': 'application/json'}}, 400, id='create-non-json', marks=worker_only),
        p('GET', '/mailbox', {'data': b'{"mailbox": ', 'headers': {'content-type': 'application/json'}}, 400, id='status-truncated-json', marks=worker_only),
        p('POST', '/mailbox', {'json': [good]}, 400, id='create-json-array', marks=worker_only),
        p('GET', '/mailbox', {'json': 'just a string'}, 400, id='status-json-string-body', marks=worker_only),
        p('GET', '/mailbox', {}, None, id='status-no-body', marks=worker_only),
        p('POST', '/mailbox', {'json': {}}, 400, id='create-missing-mailbox'),
        p('DELETE', '/mailbox', {'json': {'other': 1}}, 400, id='terminate-missing-mailbox'),
        p('GET', '/mailbox', {'json': {'mailbox': '{"foo": 1}'}}, 400, id='status-not-an-entity-id'),
        p('GET', '/mailbox', {'json': {'mailbox': 'not json at all'}}, 400, id='status-mailbox-not-json'),
        p('GET', '/mailbox', {'json': {'mailbox': 5}}, 400, id='status-mailbox-int'),
        p('GET', '/mailbox', {'json': {'mailbox': json.dumps({'uid': 'nope', 'name': None, 'role': 'user'})}}, 400, id='status-invalid-uuid'),
        p('POST', '/mailbox', {'json': {'mailbox': json.dumps({'uid': str(uuid.uuid4()), 'name': None, 'role': 'robot'})}}, 400, id='create-invalid-role'),
        p('POST', '/mailbox', {'json': {'mailbox': new_id('agent'), 'agent': 5}}, 400, id='create-agent-not-string', marks=worker_only),
        p('GET', '/message', {'json': {'mailbox': good, 'timeout': 'soon'}}, 400, id='recv-timeout-string', marks=worker_only),
        p('GET', '/mailbox/listen', {'json': {'mailbox': good, 'timeout': 'soon'}}, 400, id='listen-timeout-string', marks=worker_only),
        p('PUT', '/message', {'data': b''}, 400, id='send-empty-body', marks=worker_only),
        p('PUT', '/message', {'json': {}}, 400, id='send-missing-message'),
        p('PUT', '/message', {'json': {'message': 'not json'}}, 400, id='send-message-not-json'),
        p('PUT', '/message', {'data': no_header, 'headers': {'content-type': 'application/json'}}, 400, id='send-message-missing-header'),
        p('PUT', '/message', {'json': {'message': make_message(src, dest)[:-1] + ', "x": }'}}, 400, id='send-message-broken-json'),
        p('PUT', '/message', {'json': {'message': make_message(src, dest, kind='gossip')}}, 400, id='send-invalid-kind'),
        p('PUT', '/message', {'json': {'message': make_message(src, dest, tag='not-a-uuid')}}, 400, id='send-invalid-tag'),
        p('GET', '/discover', {'json': {'agent': 'm.C'}}, 400, id='discover-missing-allow-subclasses'),
        p('GET', '/discover', {'json': {'allow_subclasses': True}}, 400, id='discover-missing-agent'),
        p('GET', '/discover', {'json': {'agent': 'm.' + 'C' * 1024, 'allow_subclasses': True}}, 400, id='discover-class-name-too-long', marks=worker_only),
        p('POST', '/mailbox', {'json': {'mailbox': new_id('agent'), 'agent': ','.join(f'm.C{i}' for i in range(65))}}, 400, id='create-mro-of-65-classes', marks=worker_only),
        p('POST', '/mailbox', {'json': {'mailbox': new_id('user', name='n' * 4097)}}, 400, id='create-name-too-long', marks=worker_only),
        p('GET', '/nope', {'json': {'mailbox': good}}, 404, id='unknown-route'),
        p('PATCH', '/mailbox', {'json': {'mailbox': good}}, 405, id='patch-mailbox'),
        p('POST', '/message', {'json': {'mailbox': good}}, 405, id='post-message'),
        p('PUT', '/discover', {'json': {'agent': 'm.C', 'allow_subclasses': True}}, 405, id='put-discover'),
    ]


@pytest.mark.parametrize(('method', 'path', 'kwargs', 'expected'), _bad_inputs())
def test_bad_input_is_a_4xx_with_a_reason(
    api: Api,
    method: str,
    path: str,
    kwargs: dict,
    expected: int | None,
) -> None:
    r = api.request(method, path, timeout=15, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if expected is not None:
        assert r.status_code == expected, (r.status_code, r.text[:300])
    assert r.text.strip(), 'empty error body'


def test_unknown_fields_are_ignored(api: Api) -> None:
    mid = new_id()
    r = api.request('POST', '/mailbox', json={'mailbox': mid, 'colour': 'blue'})
    assert r.status_code == 200, r.text
    r = api.request('GET', '/mailbox', json={'mailbox': mid, 'extra': [1, 2]})
    assert r.status_code == 200 and r.json() == status_answer('ACTIVE')


@worker_only  # upstream reads only the JSON body (500 without one)
@pytest.mark.parametrize('path', ['/mailbox', '/mailbox/heartbeat', '/mailbox/stats'])
def test_get_accepts_query_parameters(api: Api, path: str) -> None:
    mid = api.new_mailbox()
    r = api.request('GET', path, params={'mailbox': mid})
    assert r.status_code == 200, r.text
    expected = {
        '/mailbox': status_answer('ACTIVE'),
        '/mailbox/heartbeat': {'heartbeat': None},
        '/mailbox/stats': {'incoming': 0, 'outgoing': 0, 'completed': 0, 'in_progress': 0, 'queued': 0},
    }[path]
    assert r.json() == expected


@worker_only  # upstream reads only the JSON body (500 without one)
def test_recv_accepts_query_parameters(api: Api) -> None:
    src = api.new_mailbox()
    mid = api.new_mailbox()
    msg = make_message(src, mid)
    api.send(msg)
    r = api.request('GET', '/message', params={'mailbox': mid, 'timeout': '2'})
    assert r.status_code == 200, r.text
    assert tag_of(r.json()['message']) == tag_of(msg)


@worker_only  # upstream: "JSON input should be string" -> 400
def test_plain_object_mailbox_is_accepted(api: Api) -> None:
    mid = new_id()
    obj = json.loads(mid)
    r = api.create(obj)
    assert r.status_code == 200, r.text
    assert api.status_value(obj) == 'ACTIVE'
    assert api.status_value(mid) == 'ACTIVE'  # same mailbox, string form
    assert api.terminate(obj).status_code == 200
    assert api.status_value(mid) == 'TERMINATED'


@worker_only  # upstream: "JSON input should be string" -> 400
def test_plain_object_message_is_accepted(api: Api) -> None:
    src = api.new_mailbox()
    dest = api.new_mailbox()
    msg = make_message(src, dest)
    r = api.request('PUT', '/message', json={'message': json.loads(msg)})
    assert r.status_code == 200, r.text
    got = json.loads(api.recv_message(dest, 5))
    assert got == json.loads(msg)


def test_mailboxes_are_keyed_by_uid_alone(api: Api) -> None:
    uid = str(uuid.uuid4())
    named = json.dumps({'uid': uid, 'name': 'alice', 'role': 'user'})
    anon = json.dumps({'uid': uid, 'name': None, 'role': 'user'})
    assert api.create(named).status_code == 200
    assert api.status_value(anon) == 'ACTIVE'
