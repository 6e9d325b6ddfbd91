"""The unmodified academy-py 1.0.0 client against the exchange.

pytest-asyncio is not installed: each test is a sync function running one
coroutine with ``asyncio.run``, and every await is bounded.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import bb_agents
from academy.exception import MailboxTerminatedError
from academy.exchange import HttpExchangeFactory
from academy.exchange.mailbox_status import MailboxStatus
from academy.handle import Handle
from academy.manager import Manager
from harness import Api
from harness import STEP_S
from harness import ExchangeProcess
from harness import bounded
from harness import run
from harness import uid_of




def _factory(exchange: ExchangeProcess) -> HttpExchangeFactory:
    return HttpExchangeFactory(exchange.url, auth_method=None, request_timeout_s=60)


async def _manager(exchange: ExchangeProcess) -> Manager[Any]:
    return await bounded(
        Manager.from_exchange_factory(
            _factory(exchange),
            executors=ThreadPoolExecutor(max_workers=4),
        ),
    )


def test_user_calls_an_action_on_an_agent_run_by_the_manager(
    exchange: ExchangeProcess,
) -> None:
    api = Api(exchange.url)

    async def scenario() -> None:
        async with await _manager(exchange) as manager:
            handle = await bounded(manager.launch(bb_agents.Echo, name='echo'))
            assert await bounded(handle.echo('hello')) == 'hello'
            assert await bounded(handle.add(2, 3)) == 5
            payload = {'nested': [1, 2.5, None, 'é'], 'bytes': b'\x00\xff'}
            assert await bounded(handle.echo(payload)) == payload
            assert await bounded(handle.ping(timeout=STEP_S)) >= 0

            user = manager.exchange_client.client_id
            assert api.status_value(user.model_dump_json()) == 'ACTIVE'
            agent_json = handle.agent_id.model_dump_json()
            assert api.status_value(agent_json) == 'ACTIVE'
            stats = await bounded(handle.agent_stats())
            assert stats.completed >= 4
            assert stats.in_progress == 0

            await bounded(manager.shutdown(handle, blocking=True, timeout=STEP_S))
            assert api.status_value(agent_json) == 'TERMINATED'
        # Closing the manager terminates the user's mailbox.
        assert api.status_value(user.model_dump_json()) == 'TERMINATED'

    run(scenario())


def test_user_discovers_a_running_agent(exchange: ExchangeProcess) -> None:
    async def scenario() -> None:
        async with await _manager(exchange) as manager:
            echo = await bounded(manager.launch(bb_agents.Echo))
            loud = await bounded(manager.launch(bb_agents.LoudEcho))
            client = manager.exchange_client

            exact = await bounded(client.discover(bb_agents.Echo, allow_subclasses=False))
            assert echo.agent_id in exact
            assert loud.agent_id not in exact

            wide = await bounded(client.discover(bb_agents.Echo, allow_subclasses=True))
            assert echo.agent_id in wide and loud.agent_id in wide
            assert list(wide).index(echo.agent_id) < list(wide).index(loud.agent_id)

            by_name = await bounded(client.discover('bb_agents.LoudEcho'))
            assert loud.agent_id in by_name and echo.agent_id not in by_name

            # A discovered id is usable: call through a fresh handle.
            found = Handle(next(a for a in by_name if a == loud.agent_id))
            assert await bounded(found.shout('hi')) == 'HI'

            await bounded(manager.shutdown(loud, blocking=True, timeout=STEP_S))
            after = await bounded(client.discover(bb_agents.Echo, allow_subclasses=True))
            assert loud.agent_id not in after
            assert echo.agent_id in after

    run(scenario())


def test_terminating_an_agent_fails_its_pending_call(
    exchange: ExchangeProcess,
) -> None:
    api = Api(exchange.url)

    async def scenario() -> None:
        async with await _manager(exchange) as manager:
            sleeper = bb_agents.Sleeper()
            handle = await bounded(manager.launch(sleeper))
            # Make sure the agent is up and answering first.
            assert await bounded(handle.ping(timeout=STEP_S)) >= 0

            # The call goes through its own user client, closed before the
            # agent is stopped: the agent's late "action cancelled" reply
            # then hits a closed mailbox instead of a handle that has
            # already given up on that tag.
            caller = await bounded(_factory(exchange).create_user_client())
            try:
                remote = Handle(handle.agent_id, exchange=caller, ignore_context=True)
                pending = asyncio.create_task(remote.sleep(60))
                # Wait until the agent has taken the request off its mailbox.
                agent_json = handle.agent_id.model_dump_json()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    stats = await bounded(handle.agent_stats())
                    if stats.in_progress == 1:
                        break
                    await asyncio.sleep(0.1)
                assert stats.in_progress == 1, stats
                assert not pending.done()

                t0 = time.monotonic()
                await bounded(manager.exchange_client.terminate(handle.agent_id))
                with pytest.raises(MailboxTerminatedError):
                    await bounded(pending, 10)
                assert time.monotonic() - t0 < 5
            finally:
                await bounded(caller.close())

            assert api.status_value(agent_json) == 'TERMINATED'
            assert (
                await bounded(manager.exchange_client.status(handle.agent_id))
                == MailboxStatus.TERMINATED
            )
            # academy's runtime does not stop an agent whose mailbox was
            # closed under it; stop it directly so the manager can exit.
            sleeper.stop_from_other_thread()
            await bounded(manager.wait([handle], timeout=STEP_S), STEP_S + 5)

    run(scenario())


def test_two_agents_exchange_messages(exchange: ExchangeProcess) -> None:
    async def scenario() -> None:
        async with await _manager(exchange) as manager:
            echo = await bounded(manager.launch(bb_agents.Echo, name='callee'))
            caller = await bounded(
                manager.launch(
                    bb_agents.Caller,
                    # A fresh handle object: it is used from the caller's
                    # own event loop (thread), not the manager's.
                    args=(Handle(echo.agent_id),),
                    name='caller',
                ),
            )
            assert await bounded(caller.relay('ping-pong')) == 'ping-pong'
            assert await bounded(caller.sum_via_peer([1, 2, 3, 4])) == 10
            # Concurrent relays through the same pair of mailboxes.
            results = await bounded(
                asyncio.gather(*(caller.relay(i) for i in range(8))),
            )
            assert results == list(range(8))

            stats = await bounded(echo.agent_stats())
            assert stats.completed >= 4 + 8 + 1
            caller_stats = await bounded(caller.agent_stats())
            assert caller_stats.outgoing >= 4 + 8 + 1

    run(scenario())


def test_user_client_against_raw_agent_mailbox(exchange: ExchangeProcess) -> None:
    """A request to a mailbox nobody serves, answered by hand over HTTP."""
    import json

    api = Api(exchange.url)

    async def scenario() -> None:
        factory = _factory(exchange)
        async with await bounded(factory.create_user_client()) as client:
            reg = await bounded(client.register_agent(bb_agents.Echo))
            handle = Handle(reg.agent_id, exchange=client)
            agent_json = reg.agent_id.model_dump_json()
            assert api.discover_uids('bb_agents.Echo', False).count(str(reg.agent_id.uid)) == 1

            call = asyncio.create_task(handle.echo('x'))
            request_text = await asyncio.to_thread(api.recv_message, agent_json, 10)
            request = json.loads(request_text)
            assert uid_of(request['header']['src']) == str(client.client_id.uid)
            assert request['body']['kind'] == 'action-request'
            # Answer it as the agent would, with a hand-built response.
            from academy.message import ActionResponse
            from academy.message import Message

            body = ActionResponse(result='answered by hand', serialization='json')
            reply = Message.create(
                src=reg.agent_id,
                dest=client.client_id,
                body=body,
                tag=request['header']['tag'],
                label=request['header']['label'],
            ).model_dump_json()
            sent = await asyncio.to_thread(api.send, reply)
            assert sent.status_code == 200, sent.text
            assert await bounded(call) == 'answered by hand'
            await bounded(client.terminate(reg.agent_id))

    run(scenario())


@pytest.mark.worker_only  # academy's own server serves no /v1 prefix
def test_the_client_given_the_hosted_v1_url_pattern_runs_an_agent(
    exchange: ExchangeProcess,
) -> None:
    factory = HttpExchangeFactory(exchange.url + '/v1', auth_method=None, request_timeout_s=60)

    async def scenario() -> None:
        async with await bounded(
            Manager.from_exchange_factory(factory, executors=ThreadPoolExecutor(max_workers=2)),
        ) as manager:
            handle = await bounded(manager.launch(bb_agents.Echo))
            assert await bounded(handle.echo('via /v1')) == 'via /v1'
            found = await bounded(
                manager.exchange_client.discover(bb_agents.Echo, allow_subclasses=False),
            )
            assert handle.agent_id in found
            await bounded(manager.shutdown(handle, blocking=True, timeout=STEP_S))
        # The same mailbox, seen without the prefix.
        status = Api(exchange.url).status_value(handle.agent_id.model_dump_json())
        assert status == 'TERMINATED'

    run(scenario())
