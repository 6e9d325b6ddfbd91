"""Authentication and authorization: AUTH_METHOD globus, token and access.

Each method runs on one worker for the whole module (starting one takes a few
seconds), with its identity provider faked inside this process (``fakes.py``):
Globus Auth + Groups for ``globus``, a JSON token table for ``token``, and a
Cloudflare Access team domain publishing RS256 keys for ``access``.

In every realm three people exist: the owner A (with two credentials), a
member B who shares group G with A, and an outsider C in no group. Tests that
hold for every method take the parametrized ``realm`` fixture; the rest are
method-specific. All are ``worker_only``: academy's server has only globus,
configured by TOML and hard-wired to auth.globus.org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import bb_agents
import fakes
from academy.exception import ForbiddenError
from academy.exchange import HttpExchangeFactory
from academy.handle import Handle
from academy.manager import Manager
from fakes import FakeGlobus
from fakes import FakeJwks
from fakes import new_signing_key
from harness import STEP_S
from harness import Api
from harness import bounded
from harness import run
from harness import ExchangeProcess
from harness import free_port
from harness import make_message
from harness import new_id
from harness import uid_of

pytestmark = pytest.mark.worker_only


ACCESS_KEY_REFETCH_S = 1.0
AUTH_TIMEOUT_S = 2  # worker's wait for an identity provider
AUTH_CACHE_TTL_S = 3  # worker's reuse of a Globus answer
MISSING_TEXT = 'Missing required headers.'
REJECTED_TEXT = 'Token expired or revoked.'

G = str(uuid.uuid4())  # A and B are members
H = str(uuid.uuid4())  # B is a member; A is only invited (Globus) / not in it
J = str(uuid.uuid4())  # A is a member (Globus: one pending, one active membership)
K = str(uuid.uuid4())  # nobody's group

A_NAME = 'alice@example.org'
B_NAME = 'bob@example.org'
C_NAME = 'carol@example.org'


# -------------------------------------------------------------------- realms


@dataclass
class Realm:
    """One worker with one auth method, and the people it knows."""

    name: str
    proc: ExchangeProcess
    header: Callable[[str], dict[str, str]]  # credential -> request headers
    owner: str  # A
    owner_again: str  # A, another credential
    member: str  # B (in G with A)
    outsider: str  # C (no groups)
    owner_id: str  # A's client id as the exchange should see it

    def api(self, credential: str | None = None, **extra: str) -> Api:
        headers = self.header(credential) if credential is not None else {}
        headers.update(extra)
        return Api(self.proc.url, headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}'}


def _assertion(jwt_text: str) -> dict[str, str]:
    return {'Cf-Access-Jwt-Assertion': jwt_text}


def _start(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    vars: dict[str, Any],  # noqa: A002
) -> ExchangeProcess:
    proc = ExchangeProcess(vars=vars, log_dir=tmp_path_factory.mktemp(name))
    proc.start()
    return proc


@pytest.fixture(scope='module')
def globus() -> Iterator[FakeGlobus]:
    with FakeGlobus() as fake:
        yield fake


@pytest.fixture(scope='module')
def globus_realm(
    globus: FakeGlobus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Realm]:
    a_groups: dict[str, Any] = {G: 'active', H: 'invited', J: ['pending', 'active']}
    owner = globus.add_token(A_NAME, a_groups)
    owner_again = globus.add_token(A_NAME, a_groups)
    member = globus.add_token(B_NAME, {G: 'active', H: 'active'})
    outsider = globus.add_token(C_NAME, {})
    proc = _start(
        tmp_path_factory,
        'globus-worker',
        {
            'AUTH_METHOD': 'globus',
            'GLOBUS_CLIENT_ID': globus.client_id,
            'GLOBUS_CLIENT_SECRET': globus.client_secret,
            # GLOBUS_RESOURCE_SERVER left to its default, the client id.
            'GLOBUS_AUTH_URL': globus.auth_url,
            'GLOBUS_GROUPS_URL': globus.groups_url,
            'AUTH_TIMEOUT_S': AUTH_TIMEOUT_S,
            'AUTH_CACHE_TTL_S': AUTH_CACHE_TTL_S,
        },
    )
    try:
        yield Realm('globus', proc, _bearer, owner, owner_again, member, outsider, A_NAME)
    finally:
        proc.cleanup()


TOKENS = {
    'tok-alice-1': {'client_id': 'alice', 'groups': [G, J]},
    'tok-alice-2': {'client_id': 'alice', 'groups': [G, J]},
    'tok-bob': {'client_id': 'bob', 'groups': [G, H]},
    'tok-carol': {'client_id': 'carol'},
}


@pytest.fixture(scope='module')
def token_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    proc = _start(
        tmp_path_factory,
        'token-worker',
        {'AUTH_METHOD': 'token', 'EXCHANGE_TOKENS': json.dumps(TOKENS)},
    )
    try:
        yield Realm(
            'token', proc, _bearer,
            'tok-alice-1', 'tok-alice-2', 'tok-bob', 'tok-carol', 'alice',
        )
    finally:
        proc.cleanup()


@pytest.fixture(scope='module')
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as fake:
        yield fake


@pytest.fixture(scope='module')
def access_realm(
    jwks: FakeJwks,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Realm]:
    proc = _start(
        tmp_path_factory,
        'access-worker',
        {
            'AUTH_METHOD': 'access',
            # ACCESS_JWKS_URL left to its default, <team domain>/cdn-cgi/access/certs.
            'ACCESS_TEAM_DOMAIN': jwks.url,
            'ACCESS_AUD': jwks.audience,
            'AUTH_TIMEOUT_S': AUTH_TIMEOUT_S,
            # Unknown kids refetch the key set at most this often (default 30 s).
            'ACCESS_KEY_REFETCH_S': ACCESS_KEY_REFETCH_S,
        },
    )
    hour = int(time.time()) + 3600
    try:
        yield Realm(
            'access', proc, _assertion,
            jwks.mint(email=A_NAME, groups=[G, J], exp=hour),
            jwks.mint(email=A_NAME, groups=[G, J], exp=hour),
            jwks.mint(email=B_NAME, groups=[G, H], exp=hour),
            jwks.mint(email=C_NAME, exp=hour),  # no groups claim at all
            A_NAME,
        )
    finally:
        proc.cleanup()


@pytest.fixture(params=['globus', 'token', 'access'])
def realm(request: pytest.FixtureRequest) -> Realm:
    return request.getfixturevalue(f'{request.param}_realm')


@pytest.fixture(params=['globus', 'token'])
def bearer_realm(request: pytest.FixtureRequest) -> Realm:
    return request.getfixturevalue(f'{request.param}_realm')


# ------------------------------------------------------------------- helpers


def _route_codes(api: Api, mailbox: str, own: str) -> dict[str, int]:
    """Status code of every mailbox route ``api`` calls on ``mailbox``
    (``own`` is a mailbox of the caller, the source of its messages)."""
    codes = {
        'create': api.create(mailbox).status_code,
        'status': api.status(mailbox).status_code,
        'send': api.send(make_message(own, mailbox)).status_code,
        'recv': api.recv(mailbox, 2).status_code,
        'heartbeat': api.heartbeat(mailbox).status_code,
        'get_heartbeat': api.get_heartbeat(mailbox).status_code,
        'stats': api.stats(mailbox).status_code,
    }
    r = api.listen(mailbox, 1, read_timeout=5)
    codes['listen'] = r.status_code
    r.close()
    return codes


def _all(code: int, codes: dict[str, int]) -> dict[str, int]:
    return {k: code for k in codes}


def _assert_rejected(r: Any, code: int = 403) -> None:
    assert r.status_code == code, (r.status_code, r.text)
    assert r.text == (REJECTED_TEXT if code == 403 else MISSING_TEXT), r.text


# ------------------------------------------------- every method: permissions


def test_a_client_cannot_use_a_mailbox_it_does_not_own(realm: Realm) -> None:
    a, b = realm.api(realm.owner), realm.api(realm.member)
    box = a.new_mailbox()
    own = b.new_mailbox()
    codes = _route_codes(b, box, own)
    assert codes == _all(403, codes)
    r = b.terminate(box)
    assert r.status_code == 403, r.text
    assert a.status_value(box) == 'ACTIVE'
    assert realm.api(realm.outsider).status(box).status_code == 403


def test_the_owner_uses_its_mailbox_with_any_of_its_credentials(realm: Realm) -> None:
    a1, a2 = realm.api(realm.owner), realm.api(realm.owner_again)
    box = a1.new_mailbox()
    own = a2.new_mailbox()
    codes = _route_codes(a2, box, own)
    assert codes == _all(200, codes)
    assert a2.shares(box).json() == {'group_ids': []}
    assert a2.terminate(box).status_code == 200
    assert a1.status_value(box) == 'TERMINATED'


def test_sharing_with_a_group_admits_its_members_until_unshared(realm: Realm) -> None:
    a, b, c = (realm.api(x) for x in (realm.owner, realm.member, realm.outsider))
    box = a.new_mailbox()
    b_own, c_own = b.new_mailbox(), c.new_mailbox()
    codes = _route_codes(b, box, b_own)
    assert codes == _all(403, codes)

    r = a.share(box, G)
    assert r.status_code == 200, r.text
    assert a.shares(box).json() == {'group_ids': [G]}
    codes = _route_codes(b, box, b_own)
    assert codes == _all(200, codes)
    codes = _route_codes(c, box, c_own)  # not in G
    assert codes == _all(403, codes)

    r = a.unshare(box, G)
    assert r.status_code == 200, r.text
    assert a.shares(box).json() == {'group_ids': []}
    codes = _route_codes(b, box, b_own)
    assert codes == _all(403, codes)


def test_a_member_of_a_shared_group_may_terminate_the_mailbox(realm: Realm) -> None:
    a, b = realm.api(realm.owner), realm.api(realm.member)
    box = a.new_mailbox()
    assert a.share(box, G).status_code == 200
    assert b.terminate(box).status_code == 200
    assert a.status_value(box) == 'TERMINATED'


def test_only_the_owner_may_share_list_or_unshare(realm: Realm) -> None:
    a, b = realm.api(realm.owner), realm.api(realm.member)
    box = a.new_mailbox()
    # B is in G, yet may not share A's mailbox with it ...
    assert b.share(box, G).status_code == 403
    assert b.shares(box).status_code == 403
    assert a.shares(box).json() == {'group_ids': []}
    # ... nor list or undo A's shares, even though they admit B.
    assert a.share(box, G).status_code == 200
    assert b.shares(box).status_code == 403
    assert b.unshare(box, G).status_code == 403
    assert b.share(box, H).status_code == 403  # a group B is in, A is not
    assert a.shares(box).json() == {'group_ids': [G]}


def test_the_owner_may_share_only_with_a_group_it_belongs_to(realm: Realm) -> None:
    a = realm.api(realm.owner)
    box = a.new_mailbox()
    assert a.share(box, K).status_code == 403  # nobody's group
    assert a.share(box, H).status_code == 403  # B's group
    assert a.shares(box).json() == {'group_ids': []}
    assert a.share(box, J).status_code == 200
    assert a.shares(box).json() == {'group_ids': [J]}


def test_status_of_a_missing_mailbox_needs_no_permission(realm: Realm) -> None:
    c = realm.api(realm.outsider)
    assert c.status_value(new_id()) == 'MISSING'
    assert c.status_value(new_id('agent')) == 'MISSING'


def test_spoofed_identity_headers_change_nothing(realm: Realm) -> None:
    a = realm.api(realm.owner)
    spoof = {
        'client_id': realm.owner_id,
        'client_groups': G,
        'X-Client-Id': realm.owner_id,
        'Cf-Access-Authenticated-User-Email': realm.owner_id,
    }
    c = realm.api(realm.outsider, **spoof)
    box = a.new_mailbox()
    assert a.share(box, G).status_code == 200
    own = c.new_mailbox()
    codes = _route_codes(c, box, own)
    assert codes == _all(403, codes)
    assert c.share(box, G).status_code == 403
    # What C creates while claiming to be A is C's, not A's.
    assert a.status(own).status_code == 403
    assert c.share(own, G).status_code == 403  # C is in no group
    # And without credentials the spoofed headers identify nobody.
    r = realm.api(None, **spoof).status(box)
    _assert_rejected(r, 401)


def test_discovery_lists_an_agent_only_to_those_who_may_use_it(realm: Realm) -> None:
    a, b, c = (realm.api(x) for x in (realm.owner, realm.member, realm.outsider))
    cls = f'auth_{realm.name}_{uuid.uuid4().hex[:8]}.Agent'
    agent = a.new_mailbox('agent', agent=cls)
    assert a.discover_uids(cls, False) == [uid_of(agent)]
    assert realm.api(realm.owner_again).discover_uids(cls, True) == [uid_of(agent)]
    assert b.discover_uids(cls, False) == []
    assert c.discover_uids(cls, True) == []

    assert a.share(agent, G).status_code == 200
    assert b.discover_uids(cls, False) == [uid_of(agent)]
    assert b.discover_uids(cls, True) == [uid_of(agent)]
    assert c.discover_uids(cls, True) == []

    assert a.unshare(agent, G).status_code == 200
    assert b.discover_uids(cls, True) == []
    assert a.discover_uids(cls, True) == [uid_of(agent)]


def test_a_request_without_credentials_is_401(realm: Realm) -> None:
    anonymous = realm.api(None)
    box = realm.api(realm.owner).new_mailbox()
    for r in (
        anonymous.status(new_id()),
        anonymous.status(box),
        anonymous.create(new_id()),
        anonymous.send(make_message(new_id(), box)),
        anonymous.discover('x.Agent', True),
        anonymous.share(box, G),
        anonymous.heartbeat(box),
    ):
        _assert_rejected(r, 401)


# ----------------------------------------------- bearer methods: the header


@pytest.mark.parametrize(
    'value',
    ['Basic YWxpY2U6cGFzcw==', 'Bearer', 'Bearer ', 'Bearer two parts', 'just-a-token', ''],
)
def test_a_malformed_authorization_header_is_401(bearer_realm: Realm, value: str) -> None:
    token = bearer_realm.owner
    if value == 'just-a-token':
        value = token
    elif value.startswith('Basic'):
        value = 'Basic ' + base64.b64encode(f'alice:{token}'.encode()).decode()
    r = Api(bearer_realm.proc.url, headers={'Authorization': value}).status(new_id())
    assert r.status_code == 401, (r.status_code, r.text)


def test_an_unknown_bearer_token_is_403(bearer_realm: Realm) -> None:
    api = bearer_realm.api('no-such-token-' + uuid.uuid4().hex)
    _assert_rejected(api.status(new_id()))
    _assert_rejected(api.create(new_id()))


# ------------------------------------------------------------ globus specifics


def test_globus_is_asked_with_the_client_credentials_and_documented_forms(
    globus: FakeGlobus,
    globus_realm: Realm,
) -> None:
    token = globus.add_token('dana@example.org', {G: 'active'})
    before = len(globus.requests)
    assert globus_realm.api(token).status_value(new_id()) == 'MISSING'
    seen = globus.requests[before:]
    assert [r.endpoint for r in seen] == list(fakes.ENDPOINTS)  # in this order
    basic = 'Basic ' + base64.b64encode(
        f'{globus.client_id}:{globus.client_secret}'.encode(),
    ).decode()
    introspect, dependent, groups = seen
    assert introspect.headers.get('authorization') == basic
    assert introspect.form() == {'token': token}
    assert dependent.headers.get('authorization') == basic
    assert dependent.form() == {
        'grant_type': fakes.DEPENDENT_GRANT,
        'token': token,
        'scope': fakes.GROUPS_SCOPE,
    }
    assert groups.headers.get('authorization', '').startswith('Bearer groups-')
    assert globus.bad_credentials == 0


def test_a_globus_identity_is_the_username_whichever_token_carries_it(
    globus: FakeGlobus,
    globus_realm: Realm,
) -> None:
    first = globus.add_token('erin@example.org', {G: 'active'})
    box = globus_realm.api(first).new_mailbox()
    later = globus.add_token('erin@example.org', {})
    assert globus_realm.api(later).status_value(box) == 'ACTIVE'
    other = globus.add_token('erin@example.net', {})
    assert globus_realm.api(other).status(box).status_code == 403


def test_only_active_globus_memberships_count(globus_realm: Realm) -> None:
    a = globus_realm.api(globus_realm.owner)
    box = a.new_mailbox()
    assert a.share(box, H).status_code == 403  # A is only invited to H
    assert a.share(box, J).status_code == 200  # pending + active: a member
    assert a.shares(box).json() == {'group_ids': [J]}


def test_an_inactive_globus_token_is_403(globus: FakeGlobus, globus_realm: Realm) -> None:
    token = globus.add_token('frank@example.org', {G: 'active'}, active=False)
    _assert_rejected(globus_realm.api(token).status(new_id()))
    assert globus.calls(fakes.DEPENDENT, token) == 0


def test_a_globus_token_for_another_audience_is_403_and_is_not_used(
    globus: FakeGlobus,
    globus_realm: Realm,
) -> None:
    token = globus.add_token(
        'grace@example.org',
        {G: 'active'},
        aud=['transfer.api.globus.org', 'some-other-exchange'],
    )
    _assert_rejected(globus_realm.api(token).status(new_id()))
    # Not traded for dependent tokens: it was not meant for this exchange.
    assert globus.calls(fakes.DEPENDENT, token) == 0
    assert globus.calls(fakes.MY_GROUPS, token) == 0


def test_a_second_request_with_the_same_token_does_not_ask_globus_again(
    globus: FakeGlobus,
    globus_realm: Realm,
) -> None:
    token = globus.add_token('heidi@example.org', {G: 'active'})
    api = globus_realm.api(token)
    box = api.new_mailbox()
    assert api.status_value(box) == 'ACTIVE'
    assert api.heartbeat(box).status_code == 200
    for endpoint in fakes.ENDPOINTS:
        assert globus.calls(endpoint, token) == 1, endpoint


def test_a_revoked_globus_token_is_refused_once_its_cached_identity_expires(
    globus: FakeGlobus,
    globus_realm: Realm,
) -> None:
    token = globus.add_token('ivan@example.org', {G: 'active'})
    api = globus_realm.api(token)
    box = api.new_mailbox()
    globus.set_active(token, False)
    assert api.status_value(box) == 'ACTIVE'  # still cached
    assert globus.calls(fakes.INTROSPECT, token) == 1
    time.sleep(AUTH_CACHE_TTL_S + 1)
    _assert_rejected(api.status(box))
    assert globus.calls(fakes.INTROSPECT, token) == 2


@pytest.mark.parametrize(
    ('endpoint', 'mode'),
    [
        (fakes.INTROSPECT, 'error'),
        (fakes.INTROSPECT, 'slow'),
        (fakes.INTROSPECT, 'drop'),
        (fakes.DEPENDENT, 'error'),
        (fakes.DEPENDENT, 'slow'),
        (fakes.MY_GROUPS, 'error'),
        (fakes.MY_GROUPS, 'slow'),
    ],
)
def test_a_globus_outage_is_503_with_retry_after_and_passes(
    globus: FakeGlobus,
    globus_realm: Realm,
    endpoint: str,
    mode: str,
) -> None:
    during = globus.add_token('judy@example.org', {G: 'active'})
    globus.outage(mode, endpoint)
    try:
        t0 = time.monotonic()
        r = globus_realm.api(during).status(new_id())
        elapsed = time.monotonic() - t0
    finally:
        globus.outage(None)
    assert r.status_code == 503, (r.status_code, r.text)
    retry_after = r.headers.get('Retry-After')
    assert retry_after is not None and retry_after.strip().isdigit(), r.headers
    assert elapsed < AUTH_TIMEOUT_S + 3, elapsed
    assert globus.calls(endpoint, during) >= 1  # the outage was really hit

    # Globus is back: a fresh token works, and so does the one that hit the
    # outage (an outage is not remembered as a refusal).
    fresh = globus.add_token('judy@example.org', {G: 'active'})
    box = globus_realm.api(fresh).new_mailbox()
    assert globus_realm.api(during).status_value(box) == 'ACTIVE'


def test_an_unreachable_globus_is_503_with_retry_after(
    exchange_factory: Callable[..., ExchangeProcess],
) -> None:
    nobody = f'http://127.0.0.1:{free_port()}'  # bound once, then released
    proc = exchange_factory(
        vars={
            'AUTH_METHOD': 'globus',
            'GLOBUS_CLIENT_ID': 'academy-exchange-test-client',
            'GLOBUS_CLIENT_SECRET': 'test-client-secret',
            'GLOBUS_AUTH_URL': nobody,
            'GLOBUS_GROUPS_URL': nobody,
            'AUTH_TIMEOUT_S': AUTH_TIMEOUT_S,
        },
    )
    t0 = time.monotonic()
    r = Api(proc.url, headers=_bearer('some-token')).status(new_id())
    assert time.monotonic() - t0 < AUTH_TIMEOUT_S + 3
    assert r.status_code == 503, (r.status_code, r.text)
    assert (r.headers.get('Retry-After') or '').strip().isdigit(), r.headers


def test_invalid_auth_method_fails_every_request_naming_the_variable(
    exchange_factory: Callable[..., ExchangeProcess],
) -> None:
    proc = exchange_factory(vars={'AUTH_METHOD': 'kerberos'})
    r = Api(proc.url, headers=_bearer('x')).status(new_id())
    assert r.status_code == 500, r.text
    assert r.text.startswith('Invalid exchange configuration: AUTH_METHOD'), r.text


# ------------------------------------------------------------ access specifics


def test_an_access_jwt_identifies_the_caller_by_email(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    email = f'kim-{uuid.uuid4().hex[:6]}@example.org'
    api = access_realm.api(jwks.mint(email=email))
    box = api.new_mailbox()
    src = api.new_mailbox()
    assert api.send(make_message(src, box)).status_code == 200
    assert api.recv(box, 5).status_code == 200
    # Another token naming the same email is the same owner; another email is not.
    assert access_realm.api(jwks.mint(email=email)).status_value(box) == 'ACTIVE'
    other = access_realm.api(jwks.mint(email='x' + email))
    assert other.status(box).status_code == 403


def test_an_access_audience_may_be_a_single_string(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    api = access_realm.api(jwks.mint(aud=jwks.audience))
    assert api.status_value(new_id()) == 'MISSING'
    api = access_realm.api(jwks.mint(aud=['another-app', jwks.audience]))
    assert api.status_value(new_id()) == 'MISSING'


def test_a_service_token_is_identified_by_its_common_name(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    name = f'{uuid.uuid4().hex}.access'
    service = access_realm.api(jwks.mint(jwks.service_claims(name)))
    box = service.new_mailbox()
    again = access_realm.api(jwks.mint(jwks.service_claims(name)))
    assert again.status_value(box) == 'ACTIVE'
    person = access_realm.api(jwks.mint(email=f'owner-of-{name}@example.org'))
    assert person.status(box).status_code == 403
    stranger = access_realm.api(jwks.mint(jwks.service_claims('other-' + name)))
    assert stranger.status(box).status_code == 403


def test_the_access_groups_claim_drives_sharing(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    group = str(uuid.uuid4())
    owner = access_realm.api(jwks.mint(email='lee@example.org', groups=[group, 'other']))
    member = access_realm.api(jwks.mint(email='max@example.org', groups=[group]))
    stranger = access_realm.api(jwks.mint(email='ned@example.org', groups=['other']))
    box = owner.new_mailbox()
    assert member.status(box).status_code == 403
    assert owner.share(box, 'not-mine').status_code == 403
    assert owner.share(box, group).status_code == 200
    assert member.status_value(box) == 'ACTIVE'
    assert stranger.status(box).status_code == 403
    # The same person without the group in this token is out again.
    without = access_realm.api(jwks.mint(email='max@example.org'))
    assert without.status(box).status_code == 403


def _hs256_with_public_key(jwks: FakeJwks) -> str:
    """The classic algorithm confusion: HMAC keyed with the RSA public key."""
    public = jwks.current.private_key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    head = {'alg': 'HS256', 'kid': jwks.current.kid, 'typ': 'JWT'}
    header = fakes.b64url(json.dumps(head).encode())
    payload = fakes.b64url(json.dumps(jwks.claims()).encode())
    signature = hmac.new(public, f'{header}.{payload}'.encode(), hashlib.sha256).digest()
    return f'{header}.{payload}.{fakes.b64url(signature)}'


def _unsigned(jwks: FakeJwks) -> str:
    header = fakes.b64url(json.dumps({'alg': 'none', 'kid': jwks.current.kid}).encode())
    payload = fakes.b64url(json.dumps(jwks.claims()).encode())
    return f'{header}.{payload}.'


def _tampered_payload(jwks: FakeJwks) -> str:
    header, _, signature = jwks.mint(email='someone@example.org').split('.')
    payload = fakes.b64url(json.dumps(jwks.claims(email=A_NAME)).encode())
    return f'{header}.{payload}.{signature}'


def _tampered_signature(jwks: FakeJwks) -> str:
    header, payload, signature = jwks.mint().split('.')
    raw = bytearray(base64.urlsafe_b64decode(signature + '=' * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f'{header}.{payload}.{fakes.b64url(bytes(raw))}'


BAD_JWTS: dict[str, Callable[[FakeJwks], str]] = {
    'expired': lambda j: j.mint(exp=int(time.time()) - 60, iat=int(time.time()) - 700),
    'not_yet_valid': lambda j: j.mint(nbf=int(time.time()) + 300),
    'without_expiry': lambda j: j.mint(exp=None),
    'for_another_audience': lambda j: j.mint(aud=['another-app']),
    'without_audience': lambda j: j.mint(aud=None),
    'from_another_issuer': lambda j: j.mint(iss='https://evil.cloudflareaccess.com'),
    'without_issuer': lambda j: j.mint(iss=None),
    'signed_by_an_unpublished_key': lambda j: j.mint(key=fakes.new_signing_key()),
    'signed_by_another_key_under_a_published_kid': lambda j: j.mint(
        key=fakes.new_signing_key(), kid=j.current.kid,
    ),
    'with_a_tampered_signature': _tampered_signature,
    'with_a_tampered_payload': _tampered_payload,
    'unsigned_alg_none': _unsigned,
    'hs256_keyed_with_the_public_key': _hs256_with_public_key,
    'naming_nobody': lambda j: j.mint(email=None),
    'malformed_garbage': lambda j: 'not-a-jwt',
    'malformed_three_dots': lambda j: 'a.b.c',
    'malformed_two_parts': lambda j: '.'.join(j.mint().split('.')[:2]),
}


@pytest.mark.parametrize('kind', list(BAD_JWTS))
def test_a_bad_access_jwt_is_403(jwks: FakeJwks, access_realm: Realm, kind: str) -> None:
    api = access_realm.api(BAD_JWTS[kind](jwks))
    _assert_rejected(api.status(new_id()))


def test_access_needs_the_assertion_header_not_authorization(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    r = Api(access_realm.proc.url, headers=_bearer(jwks.mint())).status(new_id())
    _assert_rejected(r, 401)


def test_access_signing_keys_are_fetched_once_and_reused(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    assert access_realm.api(jwks.mint()).status_value(new_id()) == 'MISSING'
    before = jwks.fetches
    assert before >= 1
    for _ in range(5):
        assert access_realm.api(jwks.mint()).status_value(new_id()) == 'MISSING'
    assert jwks.fetches == before


def test_a_rotated_access_signing_key_is_fetched_once(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    assert access_realm.api(jwks.mint()).status_value(new_id()) == 'MISSING'
    # Earlier tests' unknown kids may have just refetched: let the window pass.
    time.sleep(ACCESS_KEY_REFETCH_S + 0.2)
    before = jwks.fetches
    old = jwks.current
    jwks.rotate(keep_old=True)
    r = access_realm.api(jwks.mint()).status(new_id())
    assert r.status_code == 200, (
        f'a token signed with the newly published key {jwks.current.kid} got '
        f'{r.status_code} {r.text!r}; the key set was fetched '
        f'{jwks.fetches - before} more time(s) for it (expected 1)'
    )
    assert jwks.fetches == before + 1
    for _ in range(3):
        assert access_realm.api(jwks.mint()).status_value(new_id()) == 'MISSING'
        assert access_realm.api(jwks.mint(key=old)).status_value(new_id()) == 'MISSING'
    assert jwks.fetches == before + 1


def test_unknown_kids_refetch_the_key_set_at_most_once_per_window(
    jwks: FakeJwks,
    access_realm: Realm,
) -> None:
    time.sleep(ACCESS_KEY_REFETCH_S + 0.2)
    before = jwks.fetches
    forged = [jwks.mint(key=new_signing_key()) for _ in range(5)]
    for token in forged:
        assert access_realm.api(token).status(new_id()).status_code == 403
    # Five forged kids within the window cost a single fetch.
    assert jwks.fetches == before + 1


# -------------------------------------------------------- the academy client



def _factory(realm: Realm, token: str) -> HttpExchangeFactory:
    return HttpExchangeFactory(
        realm.proc.url,
        auth_method=None,
        additional_headers=_bearer(token),  # a fresh dict: the factory keeps it
        request_timeout_s=60,
    )


def test_the_academy_client_runs_and_shares_an_agent_with_a_bearer_token(
    bearer_realm: Realm,
) -> None:
    realm = bearer_realm
    group = uuid.UUID(G)

    async def scenario() -> None:
        fa, fb = _factory(realm, realm.owner), _factory(realm, realm.member)
        manager = await bounded(
            Manager.from_exchange_factory(fa, executors=ThreadPoolExecutor(max_workers=4)),
        )
        async with manager:
            handle = await bounded(manager.launch(bb_agents.Echo, name='echo'))
            assert await bounded(handle.echo('hello')) == 'hello'
            assert await bounded(handle.add(2, 3)) == 5

            b_client = await bounded(fb.create_user_client())
            a_console = await bounded(fa.console())
            b_console = await bounded(fb.console())
            try:
                remote = Handle(handle.agent_id, exchange=b_client, ignore_context=True)
                with pytest.raises(ForbiddenError):
                    await bounded(remote.echo('not yet'))
                found = await bounded(b_client.discover(bb_agents.Echo))
                assert handle.agent_id not in found

                await bounded(a_console.share_mailbox(handle.agent_id, group))
                shared = await bounded(a_console.get_shared_groups(handle.agent_id))
                assert shared == [group]
                # The agent answers into B's mailbox, so B shares it with G too.
                await bounded(b_console.share_mailbox(b_client.client_id, group))
                assert await bounded(remote.echo('shared')) == 'shared'
                found = await bounded(b_client.discover(bb_agents.Echo))
                assert handle.agent_id in found
                with pytest.raises(ForbiddenError):
                    await bounded(b_console.remove_shared_group(handle.agent_id, group))
            finally:
                await bounded(a_console.close())
                await bounded(b_console.close())
                await bounded(b_client.close())
            await bounded(manager.shutdown(handle, blocking=True, timeout=STEP_S))

    run(scenario())
