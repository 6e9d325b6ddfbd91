"""Where objects live: DATA_LOCATION_HINT and DATA_JURISDICTION (README "Data
location"), as far as local workerd lets them be tried. It accepts location hints
(and places everything on this machine anyway) and refuses every jurisdiction."""

from __future__ import annotations

import uuid

import pytest

from harness import Api
from harness import SSEStream
from harness import make_message
from harness import new_id
from harness import uid_of

pytestmark = pytest.mark.worker_only  # settings of the Worker


def test_a_location_hint_serves_every_kind_of_call_and_keeps_existing_mailboxes(
    exchange_factory, tmp_path,
) -> None:
    persist = tmp_path / 'persist'
    before = exchange_factory(persist_dir=persist)
    api = Api(before.url)
    src = api.new_mailbox()
    earlier = api.new_mailbox()
    queued = make_message(src, earlier, body='{"n": 0}')
    assert api.send(queued).status_code == 200
    before.stop()

    hinted = exchange_factory(persist_dir=persist, vars={'DATA_LOCATION_HINT': 'weur'})
    api = Api(hinted.url)
    # A hint places new objects only: the names from before reach the same objects.
    assert api.status_value(earlier) == 'ACTIVE'
    assert api.recv_message(earlier) == queued

    cls = f'bbmod_{uuid.uuid4().hex[:12]}.Placed'
    agent = api.new_mailbox('agent', agent=cls)
    assert api.discover_uids(cls, False) == [uid_of(agent)]
    polled = make_message(src, agent, body='{"n": 1}')
    assert api.send(polled).status_code == 200
    assert api.recv_message(agent) == polled
    streamed = make_message(src, agent, body='{"n": 2}')
    stream = SSEStream(api.listen(agent, 5))
    assert api.send(streamed).status_code == 200
    event = stream.next_event()
    stream.close()
    assert event is not None and event.data == streamed
    assert api.terminate(agent).status_code == 200
    assert api.discover_uids(cls, False) == []


@pytest.mark.parametrize(
    ('name', 'value', 'allowed'),
    [
        ('DATA_LOCATION_HINT', 'mars', 'wnam, enam, sam, weur, eeur, apac, oc, afr, me'),
        ('DATA_JURISDICTION', 'europe', 'eu, fedramp, fedramp-high, us'),
    ],
)
def test_a_bad_placement_setting_answers_a_configuration_error_naming_it(
    exchange_factory, name: str, value: str, allowed: str,
) -> None:
    proc = exchange_factory(vars={name: value})
    r = Api(proc.url).status(new_id())
    assert r.status_code == 500, r.text
    assert r.text == (
        f'Invalid exchange configuration: {name} must be one of {allowed} '
        f'(or unset), got "{value}"'
    ), r.text


def test_a_jurisdiction_the_runtime_refuses_is_a_configuration_error(
    exchange_factory,
) -> None:
    # Local workerd implements no jurisdiction; Cloudflare does. The setting reaches
    # the runtime, and its refusal is reported as what it is: a deployment that
    # asked for a guarantee this runtime cannot give. Nothing is stored elsewhere.
    proc = exchange_factory(vars={'DATA_JURISDICTION': 'eu'})
    api = Api(proc.url)
    mailbox = new_id()
    for r in (api.create(mailbox), api.status(mailbox)):
        assert r.status_code == 500, r.text
        assert r.text == (
            'Invalid exchange configuration: DATA_JURISDICTION "eu" was refused by '
            'the runtime: Jurisdiction restrictions are not implemented in workerd.'
        ), r.text
