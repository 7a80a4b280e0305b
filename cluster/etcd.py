"""The connection to etcd: which members to ask, over TLS or not, and what a failure means.

etcd3gw speaks etcd's v3 JSON gateway (plain HTTP: no gRPC build), one member per client; this
module keeps one client per member and moves to the next one when a member does not answer,
so that one member down changes nothing for its callers.
"""
from __future__ import annotations

import base64
import os
import warnings
from dataclasses import dataclass
from typing import Any

# etcd3gw's thread pools (futurist) import eventlet, which os-ken brings, only to say it is
# deprecated: nothing here uses it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import etcd3gw  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402

SCHEME = "etcd://"
# What one member is given to answer: one that answers at all answers fast on a LAN, but a
# write right after etcd got its quorum back may wait for its raft, and one without quorum
# gives up after several seconds by itself (its answer then says why).
REQUEST_TIMEOUT_S = 8.0


class EtcdUnavailable(Exception):
    """No member could serve the request (down, cut off, or without quorum)."""


class EtcdMaybeApplied(EtcdUnavailable):
    """A member took the request and failed to answer: it may have been carried out."""


@dataclass(frozen=True)
class EtcdTarget:
    """Where etcd is: ``etcd://HOST:PORT[,HOST:PORT...]``, and the TLS files to reach it."""

    members: tuple[tuple[str, int], ...]
    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @classmethod
    def parse(cls, url: str, cert: str | None = None, key: str | None = None,
              ca: str | None = None) -> "EtcdTarget":
        if not url.startswith(SCHEME):
            raise ValueError(f"an etcd store is {SCHEME}HOST:PORT[,HOST:PORT...], not {url!r}")
        members = []
        for part in url[len(SCHEME):].rstrip("/").split(","):
            host, sep, port = part.strip().rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{part!r} in {url!r} is not HOST:PORT")
            members.append((host, int(port)))
        if bool(cert) != bool(key):
            raise ValueError("the etcd client certificate and its key go together")
        return cls(tuple(members), cert, key, ca)

    @property
    def protocol(self) -> str:
        return "https" if self.ca or self.cert else "http"

    def __str__(self) -> str:
        return SCHEME + ",".join(f"{h}:{p}" for h, p in self.members)


def encode(data: str | bytes) -> str:
    """Keys and values as the gateway carries them (base64 of the UTF-8 bytes)."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def decode(data: str) -> bytes:
    return base64.b64decode(data)


class EtcdClient:
    """Requests to whichever member answers, starting with the one that answered last."""

    def __init__(self, target: EtcdTarget, timeout: float = REQUEST_TIMEOUT_S):
        self.target = target
        self.timeout = timeout
        self._clients = [etcd3gw.Etcd3Client(host, port, target.protocol, ca_cert=target.ca,
                                             cert_key=target.key, cert_cert=target.cert,
                                             timeout=timeout, api_path="/v3/")
                         for host, port in target.members]
        for client in self._clients:
            # Every request of a session that trusts the environment looks up proxies and
            # ~/.netrc again (environment, files): much of a transaction's CPU
            # (docs/performance.md). A CA bundle named by the environment is still honoured
            # when none is given.
            client.session.trust_env = False
            if target.ca is None:
                client.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or \
                    os.environ.get("CURL_CA_BUNDLE") or True
        self._current = 0

    @property
    def current(self) -> etcd3gw.Etcd3Client:
        """The member client that answered last (for a watch stream of one's own)."""
        return self._clients[self._current]

    def post(self, path: str, body: dict[str, Any], timeout: float | None = None,
             retry: bool = True) -> dict:
        """``POST /v3/<path>`` on a member that answers, each member given ``timeout``;
        EtcdUnavailable if none does. A request a member may have carried out without saying
        so (it took it, then timed out or failed) goes to the next one only with ``retry``:
        reads and requests that change nothing twice, not a write that must not be made
        twice (the next request goes to the next member all the same)."""
        start = self._current
        failures = []
        for offset in range(len(self._clients)):
            index = (start + offset) % len(self._clients)
            client = self._clients[index]
            where = f"{client.host}:{client.port}"
            try:
                response = client.session.post(client.get_url(path), json=body,
                                               timeout=timeout or self.timeout)
            except requests.RequestException as exc:
                failures.append(f"{where}: {type(exc).__name__}")
                if retry or _never_sent(exc):
                    continue
                self._current = (index + 1) % len(self._clients)
                raise EtcdMaybeApplied(_failed(failures))
            if response.status_code == 200:
                self._current = index
                return response.json()
            failures.append(f"{where}: {response.status_code} {_message(response)}")
            if response.status_code < 500:  # the request itself is wrong: no member takes it
                break
            if not retry:
                self._current = (index + 1) % len(self._clients)
                raise EtcdMaybeApplied(_failed(failures))
        raise EtcdUnavailable(_failed(failures))

    def rotate(self) -> None:
        """Ask another member first from now on (this one seems cut off)."""
        self._current = (self._current + 1) % len(self._clients)

    # ---- the few calls everything is made of ------------------------------------------------

    def txn(self, compare: list[dict], success: list[dict], failure: list[dict] | None = None,
            timeout: float | None = None, retry: bool = True) -> dict:
        return self.post("kv/txn", {"compare": compare, "success": success,
                                    "failure": failure or []}, timeout, retry)

    def get_prefix(self, prefix: str) -> dict:
        """The range response (header, kvs) of every key under ``prefix``."""
        return self.post("kv/range", {"key": encode(prefix),
                                      "range_end": encode(prefix_end(prefix))})

    def get(self, key: str, timeout: float | None = None) -> dict | None:
        """The key-value of ``key`` (with its revisions), or None."""
        kvs = self.post("kv/range", {"key": encode(key)}, timeout).get("kvs") or []
        return kvs[0] if kvs else None


def prefix_end(prefix: str) -> str:
    """The end of the key range holding every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _failed(failures: list[str]) -> str:
    return "etcd did not answer (" + "; ".join(failures) + ")"


def _never_sent(exc: requests.RequestException) -> bool:
    """The connection was never made (refused, or not within the timeout): the member never
    saw the request."""
    return isinstance(exc, requests.ConnectTimeout) or refused(exc)


def refused(exc: requests.RequestException) -> bool:
    """The connection was refused: the request never reached the server. Any other failure
    (reset, timeout) leaves its outcome unknown."""
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, urllib3.exceptions.MaxRetryError) and \
        isinstance(cause.reason, urllib3.exceptions.NewConnectionError)


def _message(response) -> str:
    try:
        return response.json().get("message") or response.json().get("error") or ""
    except ValueError:
        return response.text[:200]
