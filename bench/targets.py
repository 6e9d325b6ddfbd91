"""The exchanges under test, each started on a free 127.0.0.1 port and stopped by
its process group (only processes started here are ever stopped)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
QUIET_WRANGLER = {
    'EXCHANGE_SKIP_BUILD': '1',
    'CLOUDFLARE_CF_FETCH_ENABLED': 'false',
    'WRANGLER_SEND_METRICS': 'false',
    'WRANGLER_HIDE_BANNER': 'true',
    'CI': 'true',
    'NO_COLOR': '1',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Target:
    """One server process group. `name` labels results; `cost_headers` says
    whether the worker reports object calls and rows written."""

    def __init__(self, name: str, cost_headers: bool = False) -> None:
        self.name = name
        self.cost_headers = cost_headers
        self.tmp = Path(tempfile.mkdtemp(prefix=f'bench-{name}-'))
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def _spawn(self, cmd: list[str], env: dict[str, str], cwd: Path, log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, 'wb')  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def start(self) -> Target:
        cmd, env, cwd = self.command()
        self._spawn(cmd, env, cwd, 'server.log')
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + '/mailbox', json={}, timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f'{self.name} did not start: {(self.tmp / "server.log").read_text()[-2000:]}')

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the target's groups."""
        groups = {p.pid for p in self.procs}
        ticks = 0
        for entry in Path('/proc').iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups:  # pgrp
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf('SC_CLK_TCK')

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


class WorkerdDirect(Target):
    """The built Worker in workerd via Miniflare's API: no dev proxy."""

    def __init__(self) -> None:
        super().__init__('workerd', cost_headers=True)

    def command(self):
        return (['node', 'bench/serve_workerd.mjs', str(self.port), 'EXCHANGE_COST_HEADERS=1'], {}, REPO)


class WranglerDev(Target):
    def __init__(self) -> None:
        super().__init__('wrangler-dev', cost_headers=True)

    def command(self):
        cmd = [str(REPO / 'node_modules/.bin/wrangler'), 'dev', '--ip', '127.0.0.1', '--port', str(self.port),
               '--persist-to', str(self.tmp / 'state'), '--var', 'EXCHANGE_COST_HEADERS:1']
        return cmd, QUIET_WRANGLER, REPO


class Academy(Target):
    """academy's own aiohttp server; `redis_port` selects its Redis backend."""

    def __init__(self, redis: bool = False) -> None:
        super().__init__('academy-redis' if redis else 'academy-memory')
        self.redis_port = free_port() if redis else None

    def start(self) -> Target:
        if self.redis_port is not None:
            self._spawn(['redis-server', '--port', str(self.redis_port), '--bind', '127.0.0.1',
                         '--save', '', '--appendonly', 'no'], {}, self.tmp, 'redis.log')
            time.sleep(0.5)
        return super().start()

    def command(self):
        backend = (
            ['kind = "redis"', 'hostname = "127.0.0.1"', f'port = {self.redis_port}']
            if self.redis_port else ['kind = "python"']
        )
        config = self.tmp / 'exchange.toml'
        config.write_text('\n'.join([
            'host = "127.0.0.1"', f'port = {self.port}', 'listen_timeout_s = 60', '',
            '[backend]', *backend, '', '[logger]', 'level = "WARNING"', '',
        ]))
        return [sys.executable, '-m', 'academy.exchange.cloud', '--config', str(config)], {}, self.tmp


def all_targets(with_redis: bool) -> list[type[Target] | tuple]:
    targets: list = [WorkerdDirect, WranglerDev, lambda: Academy(redis=False)]
    if with_redis:
        targets.append(lambda: Academy(redis=True))
    return targets
