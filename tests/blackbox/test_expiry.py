"""Expiry and follow-ups on the real worker, with short settings: queued
messages expire after 4 s unread (MESSAGE_EXPIRY_S), mailboxes after 12 s
unused (GRAVESTONE_EXPIRY_S). Each mailbox object's alarm does the work.

Waits poll routes that do not touch the mailbox being watched (discovery, the
requester's own mailbox): reading a mailbox's status is a use, which would
keep it alive.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import pytest

import bb_agents
from academy.exception import AcademyRemoteError
from academy.exchange import HttpExchangeFactory
from academy.handle import Handle
from harness import Api
from harness import bounded
from harness import make_message
from harness import new_id
from harness import run
from harness import tag_of
from harness import uid_of

pytestmark = pytest.mark.worker_only  # upstream's in-memory exchange never expires

SHORT = {'MESSAGE_EXPIRY_S': '4', 'GRAVESTONE_EXPIRY_S': '12'}
# Longest any expiry here should take: the due time, the alarm's slack and
# local workerd's alarm delay, with room for a loaded CI machine.
WAIT_S = 40


def wait_until(check: Callable[[], bool], seconds: float = WAIT_S) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


@pytest.fixture
def short_lived(exchange_factory) -> Api:
    return Api(exchange_factory(vars=SHORT).url)


def test_an_unread_request_expires_and_its_requester_gets_an_error_reply(
    short_lived: Api,
) -> None:
    api = short_lived
    requester = api.new_mailbox()
    agent = api.new_mailbox('agent', agent=f'bbexp_{uuid.uuid4().hex[:8]}.Idle')
    request = make_message(requester, agent)
    response = make_message(requester, agent, kind='response')
    assert api.send(request).status_code == 200
    assert api.send(response).status_code == 200
    assert api.stats_value(agent)['queued'] == 2

    # The requester waits on its own mailbox: no caller waits forever.
    r = api.recv(requester, 30)
    assert r.status_code == 200, (r.status_code, r.text)
    reply = json.loads(r.json()['message'])
    assert reply['header']['tag'] == tag_of(request)
    assert uid_of(reply['header']['src']) == uid_of(agent)
    assert reply['header']['kind'] == 'response'
    assert reply['body']['kind'] == 'user-error-response'
    exception = json.loads(reply['body']['exception'])
    assert 'MessageExpiredError' in exception['exception_str']
    # The whole queue went (the queued response without a reply), and the
    # request is no longer in flight; the mailbox itself lives on.
    stats = api.stats_value(agent)
    assert (stats['queued'], stats['in_progress']) == (0, 0), stats
    assert api.status_value(agent) == 'ACTIVE'
    # Exactly one reply.
    assert api.recv(requester, 1).status_code == 408


def test_reading_renews_the_queue(short_lived: Api) -> None:
    api = short_lived
    src = api.new_mailbox()
    dest = api.new_mailbox()
    first = make_message(src, dest, kind='response', body='{"n": 1}')
    assert api.send(first).status_code == 200
    # Reads of other messages, each within the expiry, keep the queue.
    for n in range(2, 6):
        time.sleep(1.5)
        assert api.send(make_message(src, dest, kind='response', body=f'{{"n": {n}}}')).status_code == 200
        got = json.loads(api.recv_message(dest, 5))
        assert got['body']['n'] == n - 1
    # 7.5 s after the first arrival, the queue still holds the last message.
    assert json.loads(api.recv_message(dest, 5))['body']['n'] == 5


def test_the_academy_client_call_to_an_agent_nobody_runs_fails_instead_of_hanging(
    short_lived: Api,
) -> None:
    async def scenario() -> None:
        factory = HttpExchangeFactory(short_lived.url, auth_method=None, request_timeout_s=60)
        async with await bounded(factory.create_user_client()) as client:
            registration = await bounded(client.register_agent(bb_agents.Echo))
            handle = Handle(registration.agent_id, exchange=client)
            with pytest.raises(AcademyRemoteError, match='MessageExpiredError'):
                await bounded(handle.echo('anyone there?'), WAIT_S)

    run(scenario())


def test_unused_mailboxes_and_old_gravestones_become_missing(short_lived: Api) -> None:
    api = short_lived
    cls = f'bbexp_{uuid.uuid4().hex[:8]}.Forgotten'
    # The gravestone first, so it is due before `forgotten`: its status can only
    # be looked at once, since looking is a use.
    gravestone = api.new_mailbox('agent', agent=cls)
    assert api.terminate(gravestone).status_code == 200
    time.sleep(1)
    forgotten = api.new_mailbox('agent', agent=cls)
    kept = api.new_mailbox('agent', agent=cls)
    assert sorted(api.discover_uids(cls, False)) == sorted([uid_of(forgotten), uid_of(kept)])

    # Only `kept` is used meanwhile (heartbeats); discovery does not touch
    # the mailboxes it lists.
    def forgotten_gone() -> bool:
        assert api.heartbeat(kept).status_code == 200
        return uid_of(forgotten) not in api.discover_uids(cls, False)

    assert wait_until(forgotten_gone), 'the unused agent is still discoverable'
    assert api.discover_uids(cls, False) == [uid_of(kept)]
    assert api.status_value(forgotten) == 'MISSING'
    assert api.status_value(kept) == 'ACTIVE'
    # The gravestone was last used when terminated, earlier still.
    assert api.status_value(gravestone) == 'MISSING'
    # Missing for every route, and a send to it says so.
    assert api.send(make_message(kept, forgotten)).status_code == 404
    # A removed mailbox can be created afresh.
    assert api.create(gravestone).status_code == 200
    assert api.status_value(gravestone) == 'ACTIVE'


def test_expiry_survives_a_crash_and_restart(exchange_factory, tmp_path) -> None:
    """The alarm is stored with the mailbox: killed right after a request is
    queued, a worker restarted on the same storage still expires it and sends
    the requester its reply (the object's alarm does it, with no request to
    the expired mailbox)."""
    persist = tmp_path / 'persist'
    first = exchange_factory(persist_dir=persist, vars=SHORT)
    api = Api(first.url)
    requester = api.new_mailbox()
    agent = api.new_mailbox('agent', agent=f'bbexp_{uuid.uuid4().hex[:8]}.Idle')
    request = make_message(requester, agent)
    assert api.send(request).status_code == 200
    first.kill()

    second = exchange_factory(persist_dir=persist, vars=SHORT)
    api = Api(second.url)
    r = api.recv(requester, WAIT_S)
    assert r.status_code == 200, (r.status_code, r.text)
    reply = json.loads(r.json()['message'])
    assert reply['header']['tag'] == tag_of(request)
    assert reply['body']['kind'] == 'user-error-response'


def test_terminate_replies_and_unlisting_survive_a_crash(exchange_factory, tmp_path) -> None:
    """The worker is killed right after a terminate is sent. Whatever it had
    done by then, after a restart on the same storage the requester gets its
    reply and the agent leaves discovery, with no further terminate."""
    persist = tmp_path / 'persist'
    first = exchange_factory(persist_dir=persist)
    api = Api(first.url)
    cls = f'bbexp_{uuid.uuid4().hex[:8]}.Doomed'
    requester = api.new_mailbox()
    agent = api.new_mailbox('agent', agent=cls)
    request = make_message(requester, agent)
    assert api.send(request).status_code == 200

    async def terminate_then_crash() -> None:
        # The request goes out; the worker dies before it can answer.
        sending = asyncio.create_task(
            asyncio.to_thread(Api(first.url, timeout=5).terminate, agent),
        )
        await asyncio.sleep(0.05)
        first.kill()
        try:
            await asyncio.wait_for(sending, 10)
        except Exception:  # noqa: BLE001 - the connection dies with the worker
            pass

    asyncio.run(terminate_then_crash())

    second = exchange_factory(persist_dir=persist)
    api = Api(second.url)
    if api.status_value(agent) == 'ACTIVE':
        # The terminate never reached the object: nothing was owed yet.
        assert api.terminate(agent).status_code == 200
    # The reply comes (from the agent's alarm, if the crash cut the follow-ups).
    r = api.recv(requester, WAIT_S)
    assert r.status_code == 200, (r.status_code, r.text)
    reply = json.loads(r.json()['message'])
    assert reply['header']['tag'] == tag_of(request)
    assert reply['body']['kind'] == 'academy-error-response'
    assert wait_until(lambda: api.discover_uids(cls, False) == [], 20)
    assert api.status_value(agent) == 'TERMINATED'


def test_a_bad_expiry_setting_is_a_configuration_error(exchange_factory) -> None:
    proc = exchange_factory(vars={'MESSAGE_EXPIRY_S': '-3'})
    r = Api(proc.url).status(new_id())
    assert r.status_code == 500
    assert 'MESSAGE_EXPIRY_S' in r.text
