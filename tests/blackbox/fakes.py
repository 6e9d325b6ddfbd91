"""Fake identity providers for the authentication tests.

* ``FakeGlobus``: Globus Auth (token introspection, dependent tokens) and the
  Globus Groups API (``my_groups``), on one server or two.
* ``FakeJwks``: a Cloudflare Access team domain publishing its signing keys
  (``/cdn-cgi/access/certs``), with a helper minting RS256 JWTs.

Each fake is an ``http.server.ThreadingHTTPServer`` on ``127.0.0.1`` port 0,
served from a daemon thread of the test process; ``stop()`` shuts it down and
releases any handler that is deliberately stalling. Every wait is bounded.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# ------------------------------------------------------------------ plumbing


@dataclass
class Recorded:
    """One request a fake received."""

    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def form(self) -> dict[str, str]:
        """The body as an ``application/x-www-form-urlencoded`` form."""
        parsed = parse_qs(self.body.decode('utf-8', 'replace'), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}


# A handler answers (status, headers, body), or None to drop the connection
# without answering.
Answer = tuple[int, dict[str, str], bytes] | None
Route = Callable[[str, str, dict[str, str], bytes], Answer]


class FakeServer:
    """A ``ThreadingHTTPServer`` on a free ``127.0.0.1`` port, in a daemon thread.

    ``route(method, path, headers, body)`` decides every answer.
    """

    def __init__(self, name: str, route: Route) -> None:
        self.name = name
        self._route = route
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f'{self.name} not started')
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def start(self) -> FakeServer:
        route = self._route

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _handle(self) -> None:
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length > 0 else b''
                headers = {k.lower(): v for k, v in self.headers.items()}
                path = self.path.split('?', 1)[0]
                answer = route(self.command, path, headers, body)
                if answer is None:  # simulate a provider that hangs up
                    self.close_connection = True
                    return
                status, extra, payload = answer
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header('Content-Length', str(len(payload)))
                self.send_header('Connection', 'close')
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep pytest output clean

        server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={'poll_interval': 0.1},
            name=f'fake-{self.name}',
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _json(status: int, value: Any) -> Answer:
    return status, {'Content-Type': 'application/json'}, json.dumps(value).encode()


# -------------------------------------------------------------------- Globus

GROUPS_SCOPE = (
    'urn:globus:auth:scope:groups.api.globus.org:view_my_groups_and_memberships'
)
DEPENDENT_GRANT = 'urn:globus:auth:grant_type:dependent_token'

INTROSPECT = 'introspect'
DEPENDENT = 'dependent'
MY_GROUPS = 'my_groups'
ENDPOINTS = (INTROSPECT, DEPENDENT, MY_GROUPS)

OUTAGE_MODES = ('error', 'slow', 'drop')


class StartStop:
    """``with fake:`` starts it and stops it again."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class GlobusToken:
    """What Globus knows about one bearer token."""

    username: str
    # group id -> the caller's membership statuses in it ("active", "invited",
    # "pending", "left", ...). Only groups with an "active" one count.
    groups: dict[str, list[str]]
    active: bool = True
    aud: list[str] | None = None  # None: [resource server, another service]
    identity_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class FakeGlobus(StartStop):
    """Globus Auth + Groups API.

    Args:
        client_id / client_secret: the exchange's confidential client; every
            call to the Auth endpoints must carry them as HTTP basic auth
            (otherwise 401, counted in ``bad_credentials``).
        resource_server: what a good token's ``aud`` contains (default:
            ``client_id``, as the exchange's default).
        separate_groups_server: serve the Groups API from a second server
            (``groups_url``) instead of from ``auth_url``.
        slow_s: how long a ``slow`` outage stalls before answering.
    """

    def __init__(
        self,
        client_id: str = 'academy-exchange-test-client',
        client_secret: str = 'test-client-secret',
        *,
        resource_server: str | None = None,
        separate_groups_server: bool = True,
        slow_s: float = 8.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.resource_server = resource_server or client_id
        self.slow_s = slow_s
        self._lock = threading.Lock()
        self._tokens: dict[str, GlobusToken] = {}
        self._dependent: dict[str, str] = {}  # groups access token -> token
        self._calls: collections.Counter[tuple[str, str | None]] = (
            collections.Counter()
        )
        self.requests: list[Recorded] = []
        self.bad_credentials = 0
        self._outage: dict[str, str] = {}
        self._release = threading.Event()
        self._auth = FakeServer('globus-auth', self._route)
        self._groups = (
            FakeServer('globus-groups', self._route) if separate_groups_server else None
        )

    # lifecycle
    def start(self) -> FakeGlobus:
        self._auth.start()
        if self._groups is not None:
            self._groups.start()
        return self

    def stop(self) -> None:
        self._release.set()  # wake stalled handlers first
        self._auth.stop()
        if self._groups is not None:
            self._groups.stop()

    @property
    def auth_url(self) -> str:
        return self._auth.url

    @property
    def groups_url(self) -> str:
        return (self._groups or self._auth).url

    # configuration
    def add_token(
        self,
        username: str,
        groups: dict[str, str | list[str]] | None = None,
        *,
        token: str | None = None,
        active: bool = True,
        aud: list[str] | None = None,
    ) -> str:
        """Register a token for ``username``; returns the token."""
        token = token or f'globus-{uuid.uuid4().hex}'
        normalized = {
            gid: [s] if isinstance(s, str) else list(s)
            for gid, s in (groups or {}).items()
        }
        with self._lock:
            self._tokens[token] = GlobusToken(
                username=username,
                groups=normalized,
                active=active,
                aud=aud,
            )
        return token

    def set_active(self, token: str, active: bool) -> None:
        with self._lock:
            self._tokens[token].active = active

    def outage(self, mode: str | None, endpoint: str | None = None) -> None:
        """Make ``endpoint`` (all three when None) fail: ``error`` answers
        500, ``slow`` stalls ``slow_s`` before answering, ``drop`` hangs up
        without answering. ``mode=None`` ends the outage.
        """
        if mode is not None and mode not in OUTAGE_MODES:
            raise ValueError(mode)
        endpoints = ENDPOINTS if endpoint is None else (endpoint,)
        with self._lock:
            for e in endpoints:
                if mode is None:
                    self._outage.pop(e, None)
                else:
                    self._outage[e] = mode
            stalling = any(m == 'slow' for m in self._outage.values())
        if not stalling:
            self._release.set()  # let stalled handlers go now
        else:
            self._release.clear()

    # observation
    def calls(self, endpoint: str, token: str | None = None) -> int:
        """Calls received at ``endpoint`` (for ``token`` when given)."""
        with self._lock:
            if token is None:
                return sum(n for (e, _), n in self._calls.items() if e == endpoint)
            return self._calls[(endpoint, token)]

    def recorded(self, endpoint: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # the server side
    def _basic_ok(self, headers: dict[str, str]) -> bool:
        value = headers.get('authorization', '')
        scheme, _, encoded = value.partition(' ')
        if scheme.lower() != 'basic':
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f'{self.client_id}:{self.client_secret}'

    def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Answer:
        endpoint = {
            ('POST', '/v2/oauth2/token/introspect'): INTROSPECT,
            ('POST', '/v2/oauth2/token'): DEPENDENT,
            ('GET', '/v2/groups/my_groups'): MY_GROUPS,
        }.get((method, path))
        if endpoint is None:
            return _json(404, {'error': 'not_found', 'path': path})
        record = Recorded(endpoint, method, path, headers, body)
        form = record.form()
        if endpoint == MY_GROUPS:
            bearer = headers.get('authorization', '')
            token = self._dependent.get(bearer.removeprefix('Bearer '))
        else:
            token = form.get('token')
        with self._lock:
            self.requests.append(record)
            self._calls[(endpoint, token)] += 1
            mode = self._outage.get(endpoint)
        if mode == 'slow':
            self._release.wait(self.slow_s)
        elif mode == 'error':
            return _json(500, {'error': 'internal_error'})
        elif mode == 'drop':
            return None

        if endpoint == MY_GROUPS:
            return self._my_groups(token)
        if not self._basic_ok(headers):
            with self._lock:
                self.bad_credentials += 1
            return _json(401, {'error': 'invalid_client'})
        if endpoint == INTROSPECT:
            return self._introspect(form)
        return self._dependent_tokens(form)

    def _introspect(self, form: dict[str, str]) -> Answer:
        with self._lock:
            info = self._tokens.get(form.get('token', ''))
        if info is None or not info.active:
            return _json(200, {'active': False})  # what Globus says
        aud = info.aud if info.aud is not None else [
            self.resource_server,
            'transfer.api.globus.org',
        ]
        now = int(time.time())
        return _json(
            200,
            {
                'active': True,
                'scope': 'urn:globus:auth:scope:academy:exchange',
                'client_id': str(uuid.uuid4()),
                'sub': info.identity_id,
                'username': info.username,
                'name': info.username.split('@')[0],
                'email': info.username,
                'aud': aud,
                'iss': 'https://auth.globus.org',
                'exp': now + 3600,
                'iat': now - 10,
                'nbf': now - 10,
                'identity_set': [info.identity_id],
            },
        )

    def _dependent_tokens(self, form: dict[str, str]) -> Answer:
        token = form.get('token', '')
        if form.get('grant_type') != DEPENDENT_GRANT:
            return _json(400, {'error': 'unsupported_grant_type'})
        with self._lock:
            info = self._tokens.get(token)
        if info is None or not info.active:
            return _json(400, {'error': 'invalid_grant'})
        scopes = form.get('scope', '').split()
        answer = []
        if GROUPS_SCOPE in scopes:
            access = f'groups-{uuid.uuid4().hex}'
            with self._lock:
                self._dependent[access] = token
            answer.append(
                {
                    'access_token': access,
                    'scope': GROUPS_SCOPE,
                    'resource_server': 'groups.api.globus.org',
                    'token_type': 'Bearer',
                    'expires_in': 172800,
                },
            )
        return _json(200, answer)

    def _my_groups(self, token: str | None) -> Answer:
        with self._lock:
            info = self._tokens.get(token or '')
        if info is None:
            return _json(401, {'code': 'AUTHENTICATION_ERROR'})
        groups = [
            {
                'id': gid,
                'name': f'group {gid[:8]}',
                'group_type': 'regular',
                'my_memberships': [
                    {
                        'group_id': gid,
                        'identity_id': info.identity_id,
                        'username': info.username,
                        'role': 'member',
                        'status': status,
                    }
                    for status in statuses
                ],
            }
            for gid, statuses in info.groups.items()
        ]
        return _json(200, groups)


# ---------------------------------------------------------- Cloudflare Access

CERTS_PATH = '/cdn-cgi/access/certs'


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, 'big')
    return base64.urlsafe_b64encode(raw).rstrip(b'=').decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            'kid': self.kid,
            'kty': 'RSA',
            'alg': 'RS256',
            'use': 'sig',
            'e': _b64url_uint(numbers.e),
            'n': _b64url_uint(numbers.n),
        }

    def cert_pem(self) -> str:
        """A self-signed certificate, as Access also publishes them."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'fake-access')])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(self.private_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_signing_key(kid: str | None = None) -> SigningKey:
    return SigningKey(
        kid=kid or uuid.uuid4().hex,
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class FakeJwks(StartStop):
    """A Cloudflare Access team domain: its URL is the JWT issuer, and it
    publishes its signing keys at ``/cdn-cgi/access/certs``.

    Args:
        audience: the application's AUD tag put in minted tokens.
    """

    def __init__(self, audience: str = 'fake-access-aud-tag') -> None:
        self.audience = audience
        self._lock = threading.Lock()
        self.published: list[SigningKey] = [new_signing_key()]
        self.current = self.published[0]
        self._fetches = 0
        self._server = FakeServer('access-jwks', self._route)

    def start(self) -> FakeJwks:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        """The team domain (and the JWT issuer)."""
        return self._server.url

    @property
    def certs_url(self) -> str:
        return self.url + CERTS_PATH

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def rotate(self, keep_old: bool = True) -> SigningKey:
        """Sign with a new key from now on; publish it (with the old ones
        when ``keep_old``, as Access does during a rotation)."""
        key = new_signing_key()
        with self._lock:
            self.published = [key, *self.published] if keep_old else [key]
            self.current = key
        return key

    def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Answer:
        if (method, path) != ('GET', CERTS_PATH):
            return _json(404, {'error': 'not found'})
        with self._lock:
            self._fetches += 1
            keys = list(self.published)
        return _json(
            200,
            {
                'keys': [k.jwk() for k in keys],
                'public_cert': {'kid': keys[0].kid, 'cert': keys[0].cert_pem()},
                'public_certs': [{'kid': k.kid, 'cert': k.cert_pem()} for k in keys],
            },
        )

    # tokens
    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims of a good Access token for a person; ``overrides`` replace
        (or, with value ``None``, remove) claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            'aud': [self.audience],
            'email': f'user-{uuid.uuid4().hex[:8]}@example.com',
            'exp': now + 600,
            'iat': now - 5,
            'nbf': now - 5,
            'iss': self.url,
            'type': 'app',
            'identity_nonce': uuid.uuid4().hex,
            'sub': str(uuid.uuid4()),
            'country': 'US',
        }
        for k, v in overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return claims

    def service_claims(self, common_name: str, **overrides: Any) -> dict[str, Any]:
        """Claims of a service-token assertion: no email, a common_name."""
        base = self.claims(email=None, identity_nonce=None, country=None)
        base.update({'common_name': common_name, 'sub': ''})
        for k, v in overrides.items():
            if v is None:
                base.pop(k, None)
            else:
                base[k] = v
        return base

    def mint(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        """An RS256 JWT of ``claims`` (default: ``self.claims(**overrides)``),
        signed with ``key`` (default: the current key), its header naming
        ``kid`` (default: the key's kid)."""
        if claims is None:
            claims = self.claims(**overrides)
        key = key or self.current
        return jwt.encode(
            claims,
            key.private_key,
            algorithm='RS256',
            headers={'kid': kid or key.kid},
        )
