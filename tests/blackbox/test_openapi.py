"""The exchange describes itself: the OpenAPI document is valid, served to anyone,
and what the Worker does (checked by schemathesis, which generates requests from
the served document); `GET /` says what the service is.

Every answer the rest of the suite sees is checked against the document too, at
the end of the session (``EXCHANGE_CHECK_OPENAPI=1``; see ``conftest.py``).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from harness import Api
from harness import CHECK_OPENAPI
from harness import ExchangeProcess
from harness import new_id
from harness import REPO
from harness import TRAFFIC
from openapi_check import check
from recording_proxy import RecordingProxy
from recording_proxy import TrafficLog

pytestmark = pytest.mark.worker_only

DOCUMENT_PATH = REPO / 'docs' / 'openapi.json'
GUIDE_PATH = REPO / 'docs' / 'protocol.md'
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
TOKENS = {'alice-token': {'client_id': 'alice', 'groups': []}}

# Bounds of the schemathesis run: cases per operation in its fuzzing phase (its
# examples and coverage phases add a fixed set), and the whole run's time.
SCHEMATHESIS_MAX_EXAMPLES = 10
SCHEMATHESIS_SEED = 7
SCHEMATHESIS_TIMEOUT_S = 150


def test_the_document_is_a_valid_openapi_3_1_document() -> None:
    validate(DOCUMENT)  # raises on any violation of the specification
    assert DOCUMENT['openapi'] == '3.1.0'


def test_the_documents_need_no_credentials_even_where_every_route_does(
    exchange_factory: Callable[..., ExchangeProcess],
) -> None:
    proc = exchange_factory(vars={'AUTH_METHOD': 'token', 'EXCHANGE_TOKENS': json.dumps(TOKENS)})
    api = Api(proc.url)
    assert api.status(new_id()).status_code == 401
    for prefix in ('', '/v1'):
        served = api.request('GET', f'{prefix}/openapi.json')
        assert served.status_code == 200, served.text
        assert served.headers['content-type'] == 'application/json'
        assert served.json() == DOCUMENT
        guide = api.request('GET', f'{prefix}/docs')
        assert guide.status_code == 200, guide.text
        assert guide.headers['content-type'] == 'text/plain; charset=utf-8'
        assert guide.text == GUIDE_PATH.read_text()


@pytest.mark.parametrize('path', ['/', '/v1', '/v1/'])
def test_the_index_says_what_this_is_in_html_or_json(api: Api, path: str) -> None:
    browser = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
    page = api.request('GET', path, headers={'Accept': browser})
    assert page.status_code == 200, page.text
    assert page.headers['content-type'] == 'text/html; charset=utf-8'
    assert page.headers['vary'] == 'Accept'
    assert '<a href="/openapi.json">' in page.text and '<a href="/docs">' in page.text
    index = api.request('GET', path, headers={'Accept': 'application/json'})
    assert index.headers['content-type'] == 'application/json'
    answer = index.json()
    assert answer['name'] == 'academy-exchange'
    assert answer['version'] == DOCUMENT['info']['version']
    assert answer['protocol_version'] == '1'
    assert answer['links'] == {'openapi': '/openapi.json', 'docs': '/docs'}


def test_a_wrong_method_is_405_with_the_allowed_methods(api: Api) -> None:
    r = api.request('PATCH', '/mailbox', json={'mailbox': new_id()})
    assert r.status_code == 405
    assert r.headers['allow'] == 'POST, DELETE, GET'
    assert r.text == 'Method PATCH is not allowed on /mailbox'
    r = api.request('POST', '/v1/openapi.json')
    assert (r.status_code, r.headers['allow']) == (405, 'GET')


def test_errors_are_plain_text(api: Api) -> None:
    for r in (api.stats(new_id()), api.request('GET', '/nowhere'), api.status('not an id')):
        assert r.headers['content-type'] == 'text/plain; charset=utf-8', r.status_code


def test_the_answer_check_finds_an_answer_the_document_contradicts(api: Api) -> None:
    # A real answer, recorded through a proxy of its own.
    log = TrafficLog()
    with RecordingProxy(int(api.url.rsplit(':', 1)[1]), log) as proxy:
        recorded = Api(proxy.url)
        assert recorded.status_value(recorded.new_mailbox()) == 'ACTIVE'
    assert check(log.captures()).mismatches == []
    # The same answers against a document that does not allow ACTIVE.
    broken = copy.deepcopy(DOCUMENT)
    broken['components']['schemas']['MailboxStatus']['properties']['status']['enum'] = ['MISSING']
    report = check(log.captures(), broken)
    assert len(report.mismatches) == 1, report.mismatches
    assert 'GET /mailbox -> 200' in report.mismatches[0]
    assert "'ACTIVE' is not one of ['MISSING']" in report.mismatches[0]


@pytest.mark.timeout(SCHEMATHESIS_TIMEOUT_S + 60)
def test_schemathesis_finds_no_server_error_and_no_answer_the_document_contradicts(
    exchange_factory: Callable[..., ExchangeProcess],
    tmp_path: Path,
) -> None:
    # A one-second LISTEN_TIMEOUT_S bounds every long poll and stream it opens.
    proc = exchange_factory(vars={'LISTEN_TIMEOUT_S': 1})
    report_path = tmp_path / 'schemathesis.json'
    command = [
        str(Path(sys.executable).with_name('schemathesis')),
        'run',
        f'{proc.url}/openapi.json',  # as a user's tool finds it
        '--checks',
        ','.join(
            [
                'not_a_server_error',
                'status_code_conformance',
                'content_type_conformance',
                'response_headers_conformance',
                'response_schema_conformance',
                # Requests the document calls invalid must be refused: the
                # document promises no more than the Worker checks.
                'negative_data_rejection',
            ],
        ),
        '--max-examples',
        str(SCHEMATHESIS_MAX_EXAMPLES),
        '--seed',
        str(SCHEMATHESIS_SEED),
        '--workers',
        '1',
        '--request-timeout',
        '10',
        '--report',
        'json',
        '--report-json-path',
        str(report_path),
    ]
    run = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_S,
        check=False,
    )
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert run.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report['failures'] == [] and report['errors'] == [], output
    cases = report['test_cases']['generated']
    # Every operation (a path item holds only operations here) but the
    # document's own, `GET /openapi.json`, which schemathesis leaves out as the
    # schema's source.
    documented = sum(len(item) for item in DOCUMENT['paths'].values())
    assert report['operations']['tested'] == documented - 1, output
    assert cases >= 300, output
    print(
        f'schemathesis: {cases} cases on {report["operations"]["tested"]} operations '
        f'in {report["running_time"]:.1f} s, no failures',
    )


def test_the_recorded_traffic_of_this_session_is_being_kept(api: Api) -> None:
    """With the check on, the session's Workers are reached through a proxy."""
    if not CHECK_OPENAPI:
        pytest.skip('EXCHANGE_CHECK_OPENAPI is not set: answers are not recorded')
    before = len(TRAFFIC.captures())
    api.session.close()  # a new connection, so a new capture
    api.status(new_id())
    assert len(TRAFFIC.captures()) > before
