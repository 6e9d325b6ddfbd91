"""Fixtures for the black-box suite.

``EXCHANGE_TARGET=worker`` (default) runs against ``wrangler dev``;
``EXCHANGE_TARGET=upstream`` runs against academy-py's own server, and tests
marked ``worker_only`` are deselected (not skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest

from harness import Api
from harness import CHECK_OPENAPI
from harness import ExchangeProcess
from harness import serving
from harness import TARGET
from harness import TRAFFIC

OPENAPI_REPORT = pytest.StashKey[Any]()


def pytest_report_header(config: pytest.Config) -> str:
    return f'exchange target: {TARGET}'


def pytest_collection_modifyitems(
    config: pytest.Config,
    items: list[pytest.Item],
) -> None:
    if TARGET != 'upstream' or os.environ.get('EXCHANGE_KEEP_WORKER_ONLY'):
        # EXCHANGE_KEEP_WORKER_ONLY=1: run them anyway (to see upstream fail).
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker('worker_only') else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``EXCHANGE_CHECK_OPENAPI=1``: every answer the Workers gave this
    session must match ``docs/openapi.json``, or the session fails. Runs after
    the last fixture has stopped its Worker, so every recording is whole."""
    if not CHECK_OPENAPI:
        return
    from openapi_check import check

    report = check(TRAFFIC.captures())
    session.config.stash[OPENAPI_REPORT] = report
    if report.mismatches:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    report = config.stash.get(OPENAPI_REPORT, None)
    if report is None:
        return
    terminalreporter.section('answers checked against docs/openapi.json')
    terminalreporter.line(report.summary())
    for mismatch in report.mismatches[:50]:
        terminalreporter.line(f'MISMATCH {mismatch}', red=True)


@pytest.fixture(scope='session')
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeProcess]:
    """One exchange process shared by the whole session."""
    yield from serving(ExchangeProcess(log_dir=tmp_path_factory.mktemp('exchange-log')))


@pytest.fixture
def exchange_factory(
    tmp_path: Any,
) -> Iterator[Callable[..., ExchangeProcess]]:
    """Start a private exchange process: ``exchange_factory(persist_dir=...,
    vars={...}, start=True)``. Every process started here is stopped at
    teardown, whatever the test did.
    """
    started: list[ExchangeProcess] = []

    def make(
        *,
        persist_dir: str | os.PathLike[str] | None = None,
        vars: dict[str, Any] | None = None,  # noqa: A002
        start: bool = True,
    ) -> ExchangeProcess:
        proc = ExchangeProcess(
            persist_dir=persist_dir,
            vars=vars,
            log_dir=tmp_path / f'log-{len(started)}',
        )
        started.append(proc)
        if start:
            proc.start()
        return proc

    try:
        yield make
    finally:
        for proc in started:
            proc.cleanup()


@pytest.fixture
def api(exchange: ExchangeProcess) -> Api:
    return Api(exchange.url)
