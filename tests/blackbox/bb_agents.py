"""Agent classes for test_academy_client.py.

They live in an importable module so their MRO names
(``bb_agents.Echo`` ...) are stable for discovery.
"""

from __future__ import annotations

import asyncio
from typing import Any

from academy.agent import Agent
from academy.agent import action
from academy.handle import Handle


class Echo(Agent):
    @action
    async def echo(self, value: Any) -> Any:
        return value

    @action
    async def add(self, a: int, b: int) -> int:
        return a + b


class LoudEcho(Echo):
    @action
    async def shout(self, text: str) -> str:
        return text.upper()


class Sleeper(Agent):
    """A slow action; remembers its event loop so a test can stop it."""

    loop: asyncio.AbstractEventLoop | None = None

    async def agent_on_startup(self) -> None:
        self.loop = asyncio.get_running_loop()

    def stop_from_other_thread(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.agent_shutdown)

    @action
    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return 'woke up'


class Caller(Agent):
    """Holds a handle to another agent and calls it from an action."""

    def __init__(self, peer: Handle[Echo]) -> None:
        super().__init__()
        self.peer = peer

    @action
    async def relay(self, value: Any) -> Any:
        return await self.peer.echo(value)

    @action
    async def sum_via_peer(self, numbers: list[int]) -> int:
        total = 0
        for n in numbers:
            total = await self.peer.add(total, n)
        return total
