"""One scenario with academy-py 0.5.0's client, run by ``test_academy050_client.py``
with the 0.5.0 venv's python (that client cannot be imported next to academy-py
1.0.0).

Usage: ``python academy050_scenario.py URL``. Each step's outcome goes into one
JSON object on stdout: ``{"ok": <value>}`` when the client call returned,
``{"raised": <exception type>, "text": <its message>}`` when it raised. The test
asserts on those outcomes.

academy-py 0.5 clients never send ``POST /mailbox/heartbeat``; the exchange
stamps the heartbeat of a mailbox whose client sends, receives or opens a
listen stream, and the client reads it with ``heartbeat_status``
(``GET /mailbox/heartbeat``). ``status`` reads ``GET /mailbox``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from typing import TypeVar

from academy.agent import Agent
from academy.agent import action
from academy.exchange import HttpExchangeFactory
from academy.exchange import UserExchangeClient
from academy.identifier import AgentId
from academy.manager import Manager
from academy.message import Message
from academy.message import PingRequest

T = TypeVar('T')

# Bound on every step; nothing here waits on purpose except where it says so.
STEP_TIMEOUT_S = 20
# How long the scenario lets a heartbeat age before renewing it, so the renewal
# shows as a younger age.
AGEING_S = 0.6
# Polls for a listen stream's stamp: bounded, 0.1 s apart.
POLLS = 100


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, STEP_TIMEOUT_S)


async def outcome(awaitable: Awaitable[Any]) -> dict[str, Any]:
    try:
        return {'ok': await bounded(awaitable)}
    except Exception as error:  # noqa: BLE001 - every failure is the result
        return {'raised': type(error).__name__, 'text': str(error)}


class Counter(Agent):
    count: int

    async def agent_on_startup(self) -> None:
        self.count = 0

    @action
    async def add(self, value: int) -> int:
        self.count += value
        return self.count

    @action
    async def echo(self, value: Any) -> Any:
        return value


async def status(client: UserExchangeClient[Any], uid: Any) -> dict[str, Any]:
    async def value() -> str:
        return (await client.status(uid)).value

    return await outcome(value())


def ping(src: Any, dest: Any) -> Message[Any]:
    return Message.create(src=src, dest=dest, body=PingRequest())


async def quiet_client_heartbeats(
    factory: HttpExchangeFactory,
    agent: AgentId[Any],
) -> dict[str, Any]:
    """A user client with no listener: its heartbeat is stamped only by what it
    does itself. Sending, then sending again after a while, then listening."""
    result: dict[str, Any] = {}
    client = await bounded(factory.create_user_client(start_listener=False))
    me = client.client_id
    try:
        result['before_any_send'] = await outcome(client.heartbeat_status(me))
        result['send'] = await outcome(client.send(ping(me, agent)))
        result['after_send'] = await outcome(client.heartbeat_status(me))
        await asyncio.sleep(AGEING_S)
        result['aged'] = await outcome(client.heartbeat_status(me))
        result['send_again'] = await outcome(client.send(ping(me, agent)))
        result['after_send_again'] = await outcome(client.heartbeat_status(me))
    finally:
        await bounded(client.close())
    return result


async def listener_heartbeat(factory: HttpExchangeFactory) -> dict[str, Any]:
    """A new mailbox that only listens: opening the stream stamps it."""
    result: dict[str, Any] = {}
    transport = await bounded(factory._create_transport())
    me = transport.mailbox_id
    try:
        result['before_listen'] = await outcome(transport.heartbeat_status(me))

        async def drain() -> None:
            async for _ in transport.listen():
                pass

        listening = asyncio.create_task(drain())
        try:
            stamped = None
            for _ in range(POLLS):
                stamped = await bounded(transport.heartbeat_status(me))
                if stamped is not None:
                    break
                await asyncio.sleep(0.1)
            result['while_listening'] = {'ok': stamped}
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        await bounded(transport.terminate(me))
    finally:
        await bounded(transport.close())
    return result


async def main(url: str) -> dict[str, Any]:
    factory = HttpExchangeFactory(url, request_timeout_s=60)
    result: dict[str, Any] = {}
    manager = await bounded(
        Manager.from_exchange_factory(
            factory,
            executors=ThreadPoolExecutor(max_workers=4),
        ),
    )
    async with manager:
        client = manager.exchange_client
        user = client.client_id
        handle = await bounded(manager.launch(Counter, name='counter'))
        agent = handle.agent_id
        result['agent'] = str(agent.uid)
        result['user'] = str(user.uid)

        result['echo'] = await outcome(handle.echo({'nested': [1, 2.5, None, 'é']}))
        result['add'] = [await outcome(handle.add(2)), await outcome(handle.add(3))]
        result['ping'] = await outcome(handle.ping(timeout=STEP_TIMEOUT_S))

        result['status_agent'] = await status(client, agent)
        result['status_user'] = await status(client, user)
        result['status_unknown'] = await status(client, AgentId.new())

        # The agent listens and answers; the user sends and listens.
        result['heartbeat_agent'] = await outcome(client.heartbeat_status(agent))
        result['heartbeat_user'] = await outcome(client.heartbeat_status(user))
        result['quiet_client'] = await quiet_client_heartbeats(factory, agent)
        result['listener'] = await listener_heartbeat(factory)

        result['shutdown'] = await outcome(
            manager.shutdown(handle, blocking=True, timeout=STEP_TIMEOUT_S),
        )
        result['status_agent_after_shutdown'] = await status(client, agent)
        result['heartbeat_agent_after_shutdown'] = await outcome(
            client.heartbeat_status(agent),
        )
    # Closing the manager terminates the user's mailbox.
    factory_client = await bounded(factory.create_user_client(start_listener=False))
    try:
        result['status_user_after_close'] = await status(factory_client, user)
    finally:
        await bounded(factory_client.close())
    return result


if __name__ == '__main__':
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
