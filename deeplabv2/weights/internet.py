"""Time limits for every network call of this library: one setting, enforced in a helper process.

Every download (``hf-hub:`` files, registry weights, release files) and upload (``push_to_hub``,
``upload_folder``, ``deeplabv2 publish --upload``) runs under one limit of T seconds: ``timeout=``
where a function takes it, else ``DEEPLABV2_NETWORK_TIMEOUT``, else 10 s. Connecting takes at
most T s; once a request is sent, at least 10 KiB must arrive in every T s until the answer is
complete (like curl's ``--speed-limit``: a read timeout alone never ends a server that sends a
byte per second); a send blocks at most T s. A limit raises an exception that HTTP libraries do
not take for a network error: huggingface_hub does not retry.

Why a helper process: huggingface_hub has no per-call hook for this. Its requests share one
client per process (``utils._http.get_session``, made by ``default_client_factory`` with
``timeout=None``); ``create_repo`` and ``upload_folder`` pass no timeout and commit from a thread
of their own; ``hf_hub_download``'s timeouts (``etag_timeout``, each read) do not stop a dripping
server. All that could change this in the caller's process is process-wide (``set_client_factory``
also closes the client other threads use; a hook on the shared client; ``HF_HUB_*`` constants;
``socket.setdefaulttimeout``), and a call stuck in a thread cannot be stopped. So :func:`run`
starts a child Python process (no torch: about 0.5 s) that installs the limits on its own
``socket`` and ``ssl`` classes, for every library, thread and TLS connection of the operation.
It reads one JSON request on stdin, writes one JSON result on stdout, and exits when its stdin
closes: after the result, on any exception in the caller including Ctrl-C (after :data:`GRACE` s
it is killed), or when the caller dies. A release file's transfer (:mod:`.remote_zip`) keeps what
arrived in a partial file to resume from; ``hf_download`` removes a partial Hub file; ``hf_xet``
(Xet storage) keeps its own client and timeouts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, cast
from urllib.parse import urlsplit

__all__ = ["ENV_VAR", "NetworkFailure", "host_of", "network_timeout", "run"]

#: The environment variable that sets the limit, in seconds.
ENV_VAR = "DEEPLABV2_NETWORK_TIMEOUT"
#: The limit when neither ``timeout=`` nor :data:`ENV_VAR` sets it, in seconds.
DEFAULT_TIMEOUT = 10.0
#: The least a connection must deliver in every window of the limit once a request is sent.
STALL_BYTES = 10 * 1024
#: Seconds a helper process gets to end by itself once told to, before it is killed.
GRACE = 5.0


def network_timeout(timeout: Optional[float] = None) -> float:
    """The limit in seconds: ``timeout``, else ``DEEPLABV2_NETWORK_TIMEOUT`` if set, else 10; a
    ValueError naming either if it is not a number of seconds greater than 0."""
    value: Any
    name, value = ("timeout=", timeout) if timeout is not None else (ENV_VAR, os.getenv(ENV_VAR))
    if timeout is None and not (value or "").strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"{name} must be a number of seconds greater than 0 (the time limit of each network "
            f"connect, answer and transfer window, e.g. {name.rstrip('=')}=30), got {value!r}"
        )
    return seconds


def host_of(url: str) -> str:
    """``host`` or ``host:port`` (when the port is not 80 or 443) of ``url``."""
    return _label(urlsplit(url).hostname or url, urlsplit(url).port)


def _label(host: str, port: Any) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port in (80, 443, None) else f"{host}:{port}"


_MESSAGES = {  # by kind; a time limit's message names the limit
    "connect-timeout": "could not connect to {host} within {limit}; {hint}",
    "timeout": "no answer from {host} within {limit}; {hint}",
    "stall": "{host} sent less than 10 KiB in {limit}, too slow to go on; {hint}",
    "send-timeout": "{host} accepted no data for {limit}; {hint}",
    "connect": "cannot connect to {host} ({detail})",  # refused, unreachable, unknown host
    "dropped": "the connection to {host} broke ({detail})",  # reset, closed early
    "http": "{host} answered HTTP {status}{detail}",
    "bad-answer": "{host} {detail}",  # remote_zip.ServerAnswerError: what it sent
    "unsafe-file": "{detail}",  # remote_zip.LinkedFileError: a link in the cache
    "error": "{error_type}{detail}",
}


class NetworkFailure(Exception):
    """Why a network operation failed (from :func:`run`, for the caller to raise its own error
    with :meth:`describe`); ``stage``: where it was (``metadata``/``download`` for the Hub)."""

    def __init__(self, kind: str, **fields: Any) -> None:
        self.kind, self.status, self.stage = kind, fields.get("status"), fields.get("stage", "")
        self.host, self.seconds = fields.get("host") or "the server", fields.get("seconds", 0.0)
        self.detail, self.error_type = fields.get("detail", ""), fields.get("error_type", "")
        super().__init__(self.describe())

    @property
    def timed_out(self) -> bool:
        """Whether a time limit ended the operation."""
        return "{limit}" in _MESSAGES.get(self.kind, "")

    def describe(self, hint: str = f"set {ENV_VAR} to wait longer") -> str:
        """One line: what happened, where, and for a time limit the limit and ``hint``."""
        detail = self.detail or "no connection"
        if self.kind in ("http", "error"):
            detail = f": {self.detail}" if self.detail else ""
        fields = dict(host=self.host, status=self.status, detail=detail, hint=hint)
        fields.update(limit=f"{self.seconds:g} s", error_type=self.error_type or "error")
        return _MESSAGES.get(self.kind, _MESSAGES["error"]).format(**fields)


_BOOT = (  # loads this file (not the package, which imports torch) and runs _child_main
    "import importlib.util as u, sys; s = u.spec_from_file_location('_network', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._child_main()"
)


def run(
    operation: str, params: dict, *, seconds: float, host: str, env: Optional[dict] = None
) -> Any:
    """The result of ``operation`` (``hf_download``, ``url_download``, ``zip_member``,
    ``upload``) run with ``params`` in a helper process under the limit of ``seconds``, or a
    :class:`NetworkFailure` (``host``: the server to name if the helper cannot tell; ``env``:
    added to its environment).
    """
    if not sys.executable:
        raise RuntimeError("cannot start the network helper process: sys.executable is not set")
    path = [os.fspath(entry) for entry in sys.path if isinstance(entry, (str, os.PathLike))]
    request = dict(operation=operation, params=params, seconds=seconds, host=host, path=path)
    process = subprocess.Popen(
        [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stdin is not None and process.stdout is not None  # both are pipes
    try:
        with contextlib.suppress(BrokenPipeError):  # if it died at once, its exit code says so
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
        output = process.stdout.read()
    finally:  # the helper is gone when this returns, even if a second Ctrl-C comes
        try:
            process.stdin.close()
            process.wait(GRACE)  # it exits when its stdin closes
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
    try:
        result = json.loads(output)
    except ValueError:
        detail = f"the network helper process ended with exit code {process.returncode}"
        raise NetworkFailure("error", host=host, error_type="RuntimeError", detail=detail) from None
    if result.pop("ok"):
        return result["value"]
    raise NetworkFailure(**result)


# -- the helper process's side (``params`` from the parent, ``stage``: a list of one item) ----

_ORIGINAL: dict[str, Any] = {}
_REFUSED = {getattr(errno, name, 0) for name in ("ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH")}
_BROKEN = {getattr(errno, name, 0) for name in ("ECONNRESET", "ECONNABORTED", "EPIPE")}


#: Errors of :mod:`.remote_zip` (loaded by path: known by name), by failure kind.
_OWN_ERRORS = {"ServerAnswerError": "bad-answer", "LinkedFileError": "unsafe-file"}


class _Stop(Exception):
    """A limit was hit (``args[0]``: the failure). Not an OSError: no library retries it."""


def _watched(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM


class _Limits:
    """The limits, installed on the sockets of the helper process (which is ours to change).
    Sockets are known by file descriptor: a TLS socket takes over its TCP socket's."""

    def __init__(self, seconds: float, host: str) -> None:
        self.seconds, self.host = seconds, host
        self.names: dict[str, str] = {}  # address -> the host name it was resolved from
        self.peers: dict[int, str] = {}  # fd -> "host:port"
        self.windows: dict[int, list] = {}  # fd -> [start, bytes in window, bytes since send]
        self.last_peer: Optional[str] = None
        self.connect_timed_out: Optional[str] = None  # the last connection that did

    def fail(self, kind: str, peer: Optional[str]) -> None:
        raise _Stop({"kind": kind, "host": peer or self.host, "seconds": self.seconds})

    def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        infos = _ORIGINAL["getaddrinfo"](host, *args, **kwargs)
        self.names.update((str(info[4][0]), str(host)) for info in infos)
        return infos

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        self.connect_timed_out = None
        try:
            return _ORIGINAL["create_connection"](*args, **kwargs)
        except socket.timeout:  # every address timed out, the last one on our limit
            if self.connect_timed_out is not None:
                self.fail("connect-timeout", self.connect_timed_out)
            raise

    def settimeout(self, sock: socket.socket, value: Optional[float]) -> None:
        if _watched(sock) and (value is None or value > self.seconds):
            value = self.seconds  # no library waits longer than the limit
        _ORIGINAL["settimeout"](sock, value)

    def connect(self, sock: socket.socket, address: Any) -> None:
        watched, timeout = _watched(sock), sock.gettimeout()
        if watched:
            label = _label(self.names.get(str(address[0]), str(address[0])), address[1])
            self.peers[sock.fileno()] = self.last_peer = label
            self.windows[sock.fileno()] = [time.monotonic(), 0, 0]
        try:
            return _ORIGINAL["connect"](sock, address)
        except socket.timeout:  # still an OSError: create_connection tries the next address
            ours = watched and (timeout is None or timeout >= self.seconds)
            self.connect_timed_out = self.peers[sock.fileno()] if ours else None
            raise

    def send(self, sock: socket.socket, call: Callable[[], Any]) -> Any:
        if _watched(sock):
            self.windows[sock.fileno()] = [time.monotonic(), 0, 0]  # a request: a new wait
        timeout = sock.gettimeout()
        try:
            return call()
        except socket.timeout:
            if _watched(sock) and (timeout is None or timeout >= self.seconds):
                self.fail("send-timeout", self.peers.get(sock.fileno()))
            raise

    def receive(self, sock: socket.socket, call: Callable[[], Any]) -> Any:
        timeout = sock.gettimeout()
        if not _watched(sock) or timeout == 0.0:
            return call()  # non-blocking: whoever polls it is limited there
        window = self.windows.setdefault(sock.fileno(), [time.monotonic(), 0, 0])
        remaining = window[0] + self.seconds - time.monotonic()
        ours = timeout is None or remaining <= timeout  # else the library's own timeout
        kind, peer = "stall" if window[2] else "timeout", self.peers.get(sock.fileno())
        _ORIGINAL["settimeout"](sock, max(remaining, 1e-6) if ours else timeout)
        try:
            result = call()
        except socket.timeout:
            if ours:
                self.fail(kind, peer)
            raise
        finally:
            _ORIGINAL["settimeout"](sock, timeout)
        count = result if isinstance(result, int) else len(result)
        window[1], window[2] = window[1] + count, window[2] + count
        if window[1] >= STALL_BYTES:
            window[0], window[1] = time.monotonic(), 0
        return result

    def install(self) -> None:
        """Patch this helper process's ``socket`` and ``ssl`` with the limits."""
        # the classes are patched in place (typed as Any: their methods are replaced)
        limits, plain, secure = self, cast(Any, socket.socket), cast(Any, ssl.SSLSocket)
        _ORIGINAL.update(getaddrinfo=socket.getaddrinfo, create_connection=socket.create_connection)
        _ORIGINAL.update(settimeout=plain.settimeout, connect=plain.connect)
        recv, recv_into, send, sendall = plain.recv, plain.recv_into, plain.send, plain.sendall
        ssl_read, ssl_send, ssl_write = secure.read, secure.send, secure.write
        socket.setdefaulttimeout(self.seconds)
        socket.getaddrinfo, socket.create_connection = self.getaddrinfo, self.create_connection
        plain.settimeout = lambda s, value: limits.settimeout(s, value)
        plain.setblocking = lambda s, flag: limits.settimeout(s, None if flag else 0.0)
        plain.connect = lambda s, address: limits.connect(s, address)
        plain.recv = lambda s, *a, **k: limits.receive(s, lambda: recv(s, *a, **k))
        plain.recv_into = lambda s, *a, **k: limits.receive(s, lambda: recv_into(s, *a, **k))
        plain.send = lambda s, *a, **k: limits.send(s, lambda: send(s, *a, **k))
        plain.sendall = lambda s, *a, **k: limits.send(s, lambda: sendall(s, *a, **k))
        secure.read = lambda s, *a, **k: limits.receive(s, lambda: ssl_read(s, *a, **k))
        secure.send = lambda s, *a, **k: limits.send(s, lambda: ssl_send(s, *a, **k))
        secure.write = lambda s, *a, **k: limits.send(s, lambda: ssl_write(s, *a, **k))

    def describe(self, error: BaseException, stage: str) -> dict[str, Any]:
        """The fields of the :class:`NetworkFailure` that ``error`` means (JSON)."""
        # the error, its causes and contexts, a URLError's reason
        chain: list[BaseException] = []
        todo: list[Any] = [error]
        while todo and len(chain) < 32:
            item = todo.pop(0)
            if isinstance(item, BaseException) and all(item is not seen for seen in chain):
                chain.append(item)
                todo += [item.__cause__, item.__context__, getattr(item, "reason", None)]
        base = {"stage": stage, "seconds": self.seconds, "host": self.last_peer or self.host}
        for item in chain:  # a limit; else a status: httpx/requests (response), urllib (HTTPError)
            if isinstance(item, _Stop):
                return {**item.args[0], "stage": stage}
            kind = _OWN_ERRORS.get(type(item).__name__)
            if kind is not None:  # its message says it all, and is not cut
                return {**base, "kind": kind, "detail": " ".join(str(item).split())}
            response = getattr(item, "response", None)
            status, url = getattr(response, "status_code", None), getattr(response, "url", None)
            if status is None and hasattr(item, "headers") and hasattr(item, "url"):
                status, url = getattr(item, "code", None), item.url
            if isinstance(status, int):
                detail = getattr(item, "server_message", None) or getattr(item, "reason", None)
                detail = " ".join(detail.split())[:200] if isinstance(detail, str) else ""
                host = host_of(str(url)) if url else base["host"]
                return {**base, "kind": "http", "status": status, "host": host, "detail": detail}
        for item in chain:  # the system's words first: "connection refused"
            code = getattr(item, "errno", 0)
            if isinstance(item, socket.gaierror) or code in _REFUSED | _BROKEN:
                kind = "dropped" if code in _BROKEN else "connect"
                detail = str(getattr(item, "strerror", None) or item).lower()
                return {**base, "kind": kind, "detail": detail}
        for item in chain:
            name, detail = type(item).__name__, " ".join(str(item).split())[:300]
            if isinstance(item, socket.timeout) or "Timeout" in name:
                timed_out = self.connect_timed_out
                kind = "connect-timeout" if timed_out else "timeout"
                return {**base, "kind": kind, "host": timed_out or base["host"]}
            if isinstance(item, ConnectionError) or name == "ConnectError":
                return {**base, "kind": "connect", "detail": detail}
            if name in ("RemoteProtocolError", "ProtocolError", "IncompleteRead", "ReadError"):
                return {**base, "kind": "dropped", "detail": detail}
        detail = " ".join(str(error).split())[:300]
        return {**base, "kind": "error", "error_type": type(error).__name__, "detail": detail}


def _hf_download(params: dict, stage: list, seconds: float) -> str:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    repo_id, filename, revision = params.pop("repo_id"), params.pop("filename"), params["revision"]
    stage[0] = "metadata"  # one request, no retries: if it fails, the caller may use its cache
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=params["endpoint"])
    get_hf_file_metadata(url, token=params["token"], timeout=seconds)
    stage[0] = "download"
    return hf_hub_download(repo_id, filename, etag_timeout=seconds, **params)


def _upload(params: dict, stage: list, seconds: float) -> Optional[str]:
    from huggingface_hub import HfApi

    hub, repo_id = HfApi(**params.pop("api")), params.pop("repo_id")
    hub.create_repo(repo_id, private=params.pop("private"), exist_ok=True)
    commit = hub.upload_folder(folder_path=params.pop("folder"), repo_id=repo_id, **params)
    return getattr(commit, "oid", None)


#: Operations of :mod:`deeplabv2.weights.remote_zip` (plain HTTP, resumable), by name.
_TRANSFERS = {"url_download": "fetch_file", "zip_member": "fetch_member"}


def _load(name: str) -> Any:
    """A module of this folder loaded by its path, as this file is (not through the package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_main() -> None:
    """The helper process: read the request, install the limits, run, write the result."""
    results = os.dup(1)  # the result channel; print() now goes to stderr
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it closes our stdin
    request = json.loads(sys.stdin.buffer.readline())

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns when the parent closes our stdin, or dies
        os._exit(3)

    threading.Thread(target=watch_parent, daemon=True).start()
    sys.path[:] = request["path"]
    params, stage, seconds = request["params"], [""], request["seconds"]
    if request["operation"] not in _TRANSFERS and not params.pop("progress"):
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
    limits = _Limits(seconds, request["host"])
    limits.install()
    operation = {"hf_download": _hf_download, "upload": _upload}
    if request["operation"] in _TRANSFERS:  # plain HTTP transfers, resumable
        transfers = _load("remote_zip")
        operation.update({name: getattr(transfers, f) for name, f in _TRANSFERS.items()})
    try:
        result = {"ok": True, "value": operation[request["operation"]](params, stage, seconds)}
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
        result = {"ok": False, **limits.describe(error, stage[0])}
    os.write(results, json.dumps(result).encode())
    sys.stderr.flush()
    os._exit(0)  # the libraries' threads (pools, progress displays) must not hold us
