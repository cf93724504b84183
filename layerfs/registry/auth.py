"""Registry authentication as the container ecosystem does it.

- Credentials: ``--creds USER:PASSWORD``, ``--authfile FILE``, else the first
  of ``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
  ``~/.config/containers/auth.json``, ``$DOCKER_CONFIG/config.json`` (default
  ``~/.docker/config.json``) holding an entry for the registry. An entry is
  ``auths`` (``auth`` = base64 of ``user:password``, or ``username`` /
  ``password``, or ``identitytoken``; the most specific ``host/namespace`` key
  wins, as in containers-auth.json(5)), or a credential helper
  (``credHelpers`` per registry, ``credsStore`` for all), run as
  ``docker-credential-NAME get``.
- Challenges: a 401 carries ``WWW-Authenticate: Basic ...`` (send the
  credentials) or ``Bearer realm=...,service=...,scope=...`` (ask the realm
  for a token, with the credentials if any, else anonymously).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UsageError
from .errors import AuthError
from .reference import DOCKER_HUB, DOCKER_HUB_ALIASES, Reference

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT = 30
TOKEN_MARGIN = 10
"""Seconds before a token's expiry at which it is no longer used."""


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    source: str = ""
    """Where they came from (a file, a helper, --creds), for error messages."""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_creds(text: str) -> Credentials:
    """``--creds USER[:PASSWORD]``."""
    username, _, password = text.partition(":")
    if not username:
        raise UsageError("--creds: expected USER:PASSWORD")
    return Credentials(username, password, source="--creds")


# -- finding credentials -----------------------------------------------------------------

def auth_files(env: dict[str, str] | None = None) -> list[Path]:
    """The files searched for credentials, in order."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    files.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return files


def find_credentials(ref: Reference, authfile: str | None = None,
                     env: dict[str, str] | None = None) -> Credentials | None:
    """Credentials for ``ref``'s registry from the first auth file that has some."""
    files = [Path(authfile)] if authfile else auth_files(env)
    for path in files:
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            if authfile:
                raise UsageError(f"--authfile {authfile}: no such file") from None
            continue
        except (OSError, ValueError) as exc:
            raise AuthError(f"{path}: unreadable credentials file ({exc})") from None
        if not isinstance(config, dict):
            continue
        found = credentials_in(config, ref, str(path))
        if found is not None:
            return found
    return None


def normal_key(key: str) -> str:
    """An ``auths`` key as ``host[/path]``: no scheme, no ``/v1/``-style API path."""
    text = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    host, _, path = text.partition("/")
    if host.lower() in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if re.fullmatch(r"v[12]", path or "") or key.startswith(("http://", "https://")):
        path = ""  # a URL names a whole registry
    return f"{host}/{path}" if path else host


def credentials_in(config: dict, ref: Reference, where: str) -> Credentials | None:
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
    for key, helper in helpers.items():
        if normal_key(key) == ref.registry and isinstance(helper, str):
            return run_helper(helper, ref, where)
    auths = config.get("auths") if isinstance(config.get("auths"), dict) else {}
    entry = _best_entry(auths, ref)
    store = config.get("credsStore")
    if isinstance(store, str) and store and (entry is None or not _has_secret(entry)):
        found = run_helper(store, ref, where)
        if found is not None:
            return found
    if entry is None or not _has_secret(entry):
        return None
    return _entry_credentials(entry, where)


def _best_entry(auths: dict, ref: Reference) -> dict | None:
    wanted = f"{ref.registry}/{ref.repository}"
    best: tuple[int, dict] | None = None
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        normal = normal_key(key)
        if wanted == normal or wanted.startswith(normal + "/"):
            if best is None or len(normal) > best[0]:
                best = (len(normal), entry)
    return best[1] if best else None


def _has_secret(entry: dict) -> bool:
    return bool(entry.get("auth") or entry.get("username") or entry.get("identitytoken"))


def _entry_credentials(entry: dict, where: str) -> Credentials:
    if entry.get("identitytoken"):
        return Credentials(username=str(entry.get("username", "")),
                           identity_token=str(entry["identitytoken"]), source=where)
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=False).decode()
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"{where}: an 'auth' entry is not base64 of USER:PASSWORD") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(f"{where}: an 'auth' entry is not base64 of USER:PASSWORD")
        return Credentials(username, password, source=where)
    return Credentials(str(entry.get("username", "")), str(entry.get("password", "")),
                       source=where)


def run_helper(name: str, ref: Reference, where: str) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` (the docker credential helper protocol)."""
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise AuthError(f"{where}: credential helper {program} is not installed")
    server = DOCKER_HUB_AUTH_KEY if ref.registry == DOCKER_HUB else ref.registry
    try:
        result = subprocess.run([program, "get"], input=server, capture_output=True, text=True,
                                timeout=HELPER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AuthError(f"{program}: no answer within {HELPER_TIMEOUT}s") from None
    if result.returncode != 0:
        if "not found" in (result.stdout + result.stderr).lower():
            return None
        message = (result.stderr or result.stdout).strip().splitlines()
        raise AuthError(f"{program} get {server}: failed: {message[-1] if message else ''}")
    try:
        answer = json.loads(result.stdout)
        username, secret = str(answer.get("Username", "")), str(answer["Secret"])
    except (ValueError, KeyError, AttributeError):
        raise AuthError(f"{program} get {server}: unreadable answer") from None
    source = f"credential helper {program}"
    if username == "<token>":
        return Credentials(identity_token=secret, source=source)
    return Credentials(username, secret, source=source)


# -- challenges ------------------------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    scheme: str
    """Lowercase: "basic" or "bearer"."""
    params: dict[str, str]


_SCHEME = re.compile(r"\s*,?\s*([A-Za-z][\w!#$%&'*+.^`|~-]*)(?:\s+|$)")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_TOKEN68 = re.compile(r"\s*[A-Za-z0-9._~+/-]+=*\s*(?:,|$)")


def parse_challenge(header: str) -> Challenge | None:
    """The first Basic or Bearer challenge of a ``WWW-Authenticate`` value (RFC 7235:
    challenges are a scheme and either auth-params or a token68, comma separated)."""
    text = header.strip()
    position = 0
    while position < len(text):
        scheme = _SCHEME.match(text, position)
        if not scheme:
            return None
        position = scheme.end()
        params: dict[str, str] = {}
        while position < len(text):
            param = _PARAM.match(text, position)
            if param:
                value = param.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params[param.group(1).lower()] = value
                position = param.end()
                continue
            token = _TOKEN68.match(text, position)
            if token and not params:
                position = token.end()
                continue
            break
        if scheme.group(1).lower() in ("basic", "bearer"):
            return Challenge(scheme.group(1).lower(), params)
    return None


# -- answering them ----------------------------------------------------------------------

TokenFetcher = Callable[[str, dict[str, str], "str | None", "bytes | None"], tuple[int, bytes]]
"""(url, headers, method, body) -> (status, body): how the authenticator reaches a realm."""


class Authenticator:
    """Turns challenges into Authorization headers, caching tokens per scope."""

    def __init__(self, ref: Reference, credentials: Credentials | None,
                 fetch: TokenFetcher) -> None:
        self.ref = ref
        self.credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        self._headers: dict[str, tuple[str, float]] = {}
        self._basic_ok = False

    def header(self, scope: str) -> str | None:
        """The Authorization header to send proactively for ``scope``, if one is known."""
        with self._lock:
            cached = self._headers.get(scope)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        if self._basic_ok and self.credentials is not None:
            return self.credentials.basic_header()
        return None

    def answer(self, header: str | None, scope: str, what: str, *,
               previous: str | None = None) -> str:
        """The Authorization header answering a 401's challenge; AuthError if none can."""
        challenge = parse_challenge(header or "")
        if challenge is None:
            raise AuthError(f"{what}: authentication required (401) but the registry "
                            "sent no Basic or Bearer challenge")
        if challenge.scheme == "basic":
            if self.credentials is None or not self.credentials.username:
                raise AuthError(f"{what}: authentication required (401): "
                                f"{self.no_credentials_hint()}")
            value = self.credentials.basic_header()
            if value == previous:
                raise AuthError(f"{what}: authentication failed (401): the registry rejected "
                                f"the credentials from {self.credentials.source}")
            self._basic_ok = True
            return value
        if challenge.params.get("error") == "insufficient_scope" and previous:
            raise AuthError(f"{what}: access denied (401 insufficient_scope): "
                            + self._who())
        token, lifetime = self._token(challenge, scope, what)
        value = f"Bearer {token}"
        if value == previous:
            raise AuthError(f"{what}: authentication failed (401): the registry refused its "
                            f"token server's token; {self._who()}")
        with self._lock:
            self._headers[scope] = (value, time.monotonic() + lifetime)
        return value

    def forget(self, scope: str) -> None:
        with self._lock:
            self._headers.pop(scope, None)

    def no_credentials_hint(self) -> str:
        return (f"no credentials for {self.ref.registry} (looked in "
                f"{', '.join(str(p) for p in auth_files())}); log in with "
                "'podman login' or 'docker login', or give --creds USER:PASSWORD")

    def _who(self) -> str:
        if self.credentials is None:
            return f"anonymous access is not allowed; {self.no_credentials_hint()}"
        return (f"the user '{self.credentials.username or '<token>'}' (credentials from "
                f"{self.credentials.source}) may not pull it")

    def _token(self, challenge: Challenge, scope: str, what: str) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise AuthError(f"{what}: the registry's token realm '{realm}' is not a URL")
        service = challenge.params.get("service", "")
        scopes = [scope] if scope else []
        creds = self.credentials
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "layerfs"}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            status, body = self._fetch(realm, {"Content-Type":
                                               "application/x-www-form-urlencoded"},
                                       "POST", urllib.parse.urlencode(form).encode())
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            if creds is not None and creds.username:
                query.append(("account", creds.username))
            url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
            headers = {}
            if creds is not None and creds.username:
                headers["Authorization"] = creds.basic_header()
            status, body = self._fetch(url, headers, "GET", None)
        if status in (401, 403):
            if creds is None:
                raise AuthError(f"{what}: authentication required ({status} from the token "
                                f"server {realm}): {self.no_credentials_hint()}")
            raise AuthError(f"{what}: authentication failed ({status} from the token server "
                            f"{realm}) with the credentials from {creds.source}")
        if status != 200:
            raise AuthError(f"{what}: the token server {realm} answered {status}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise AuthError(f"{what}: the token server {realm} sent no token") from None
        if not token:
            raise AuthError(f"{what}: the token server {realm} sent no token")
        return str(token), max(lifetime - TOKEN_MARGIN, 1.0)
