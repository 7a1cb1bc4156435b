"""A minimal HTTP server on 127.0.0.1 for the network tests (threads that stop by themselves):
silent, dripping, 401 and file-serving modes; ranges on or off, bytes counted, a connection
dropped half way."""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Optional

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalServer:
    """A minimal HTTP server on 127.0.0.1 for one test, run by threads that stop by themselves
    (at :meth:`close`, or after :attr:`LIFETIME` seconds at the latest).

    Modes: ``silent`` reads requests and never answers; ``drip`` answers one byte per second
    from the status line on; ``body-drip`` sends the headers of a response at once (to HEAD as
    the Hub does, with commit and ETag) and then its body one byte per second; ``401`` answers
    every request with 401 Unauthorized; ``ok`` answers at once: ``content`` to HEAD and GET,
    and the Hub's answers to the requests of an upload of ``me/roads``.

    In ``ok`` mode a file is served with ``Range`` requests (``bytes=a-b``, ``a-``, ``-n``;
    ``If-Range`` against its ETag or Last-Modified date) unless :attr:`ranges` is False;
    :attr:`sent` counts the bytes sent (headers and bodies), :attr:`headers` keeps each
    request's headers (lower-case names), and :attr:`drop_after` (set by a test) closes the next
    file answer whose body is longer than that many bytes after them.

    Set by a test to misbehave as real servers do: :attr:`etag` and :attr:`last_modified`
    (None: the header is not sent), :attr:`if_range` (False: ``If-Range`` is ignored, a range
    is always served), :attr:`overrun` (file answers send no ``Content-Length`` and that many
    bytes more than they should, then close), :attr:`content_range` (sent instead of the true
    ``Content-Range`` of every 206 answer).
    """

    LIFETIME = 30.0
    BODY = 100_000

    def __init__(self, mode: str, content: bytes = b"") -> None:
        self.mode, self.content = mode, content
        self.stopped = threading.Event()
        self.deadline = time.monotonic() + self.LIFETIME
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.ranges, self.sent, self.drop_after = True, 0, None
        self.etag: Optional[str] = '"v1"'
        self.last_modified: Optional[str] = None
        self.if_range, self.overrun = True, 0
        self.content_range: Optional[str] = None
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def running(self) -> bool:
        return not self.stopped.is_set() and time.monotonic() < self.deadline

    def close(self) -> None:
        self.stopped.set()
        for thread in list(self.threads):
            thread.join(timeout=5)
        assert not any(thread.is_alive() for thread in self.threads), "a server thread hangs"

    def _accept(self) -> None:
        with self.listener:
            while self.running():
                try:
                    connection, _ = self.listener.accept()
                except socket.timeout:
                    continue
                thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
                self.threads.append(thread)
                thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(0.1)
            while self.running():
                request = self._read_request(connection)
                if request is None or not self._answer(connection, request):
                    return

    def _read_request(self, connection: socket.socket) -> Optional[tuple[str, bytes]]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._recv(connection)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", 0))
        while len(body) < length:
            chunk = self._recv(connection)
            if not chunk:
                return None
            body += chunk
        self.requests.append(lines[0])
        self.headers.append(fields)
        return lines[0], body

    def _recv(self, connection: socket.socket) -> bytes:
        while self.running():
            try:
                return connection.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return b""
        return b""

    def _answer(self, connection: socket.socket, request: tuple[str, bytes]) -> bool:
        """Answer one request; False closes the connection."""
        method, path = request[0].split(" ")[:2]
        if self.mode == "silent":
            self.stopped.wait(max(0.0, self.deadline - time.monotonic()))
            return False
        if self.mode == "401":
            body = b'{"error": "Invalid username or password."}'
            connection.sendall(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return False
        headers = (
            f'HTTP/1.1 200 OK\r\nContent-Length: {self.BODY}\r\nETag: "{"e" * 64}"\r\n'
            f"X-Repo-Commit: {COMMIT}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        if self.mode == "drip":
            self._drip(connection, headers + b"x" * self.BODY)
            return False
        if self.mode == "ok" and method == "GET" and path.endswith((".zip", ".pth")):
            return self._file(connection, self.headers[-1])
        if self.mode == "ok":
            connection.sendall(self._ok(method, path, request[1]))
            return True
        assert self.mode == "body-drip", self.mode
        connection.sendall(headers)
        if method == "HEAD":
            return True
        self._drip(connection, b"x" * self.BODY)
        return False

    def _ok(self, method: str, path: str, body: bytes) -> bytes:
        """The answer of a file server, and of the Hub to an upload of ``me/roads``."""
        import hashlib
        import json

        status, data = "200 OK", self.content
        headers = {
            "ETag": f'"{hashlib.sha256(self.content).hexdigest()}"',
            "X-Repo-Commit": COMMIT,
            "Content-Type": "application/octet-stream",
        }
        if method == "POST":
            headers["Content-Type"] = "application/json"
            if path == "/api/repos/create":
                answer: object = {"url": f"{self.url}/me/roads", "name": "me/roads"}
            elif path == "/api/validate-yaml":  # the model card's metadata
                answer = {"errors": [], "warnings": []}
            elif path.startswith("/api/models/me/roads/preupload/"):
                files = json.loads(body)["files"]
                answer = {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                }
            elif path.startswith("/api/models/me/roads/commit/"):
                answer = {"commitUrl": f"{self.url}/me/roads/commit/{'c' * 40}",
                          "commitOid": "c" * 40}  # fmt: skip
            else:
                status, answer = "404 Not Found", {"error": "not here"}
            data = json.dumps(answer).encode()
        elif not path.endswith((".safetensors", ".zip")):
            status, data = "404 Not Found", b"{}"
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        return head.encode() + b"\r\n" + (b"" if method == "HEAD" else data)

    def _file(self, connection: socket.socket, fields: dict[str, str]) -> bool:
        """Answer a GET of the file :attr:`content`, a range of it if asked and allowed."""
        data, status, total = self.content, "200 OK", len(self.content)
        headers = f"Accept-Ranges: {'bytes' if self.ranges else 'none'}\r\n"
        headers += f"ETag: {self.etag}\r\n" if self.etag else ""
        headers += f"Last-Modified: {self.last_modified}\r\n" if self.last_modified else ""
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", fields.get("range", ""))
        validator = fields.get("if-range")
        fresh = not self.if_range or validator in (None, self.etag, self.last_modified)
        if self.ranges and match and fresh:
            first, last = match[1], match[2]
            start = total - int(last) if not first else int(first)
            end = total - 1 if not first or not last else min(int(last), total - 1)
            start = max(start, 0)
            if start > end:
                status, data = "416 Range Not Satisfiable", b""
                headers += f"Content-Range: bytes */{total}\r\n"
            else:
                status, data = "206 Partial Content", data[start : end + 1]
                where = self.content_range or f"bytes {start}-{end}/{total}"
                headers += f"Content-Range: {where}\r\n"
        if self.overrun:
            head = f"HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n".encode()
            self._send_until_closed(connection, head + data, self.overrun)
            return False
        head = f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n{headers}\r\n".encode()
        if self.drop_after is not None and len(data) > self.drop_after:
            data, self.drop_after = data[: self.drop_after], None
            self._send(connection, head + data)
            return False
        self._send(connection, head + data)
        return True

    def _send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def _send_until_closed(self, connection: socket.socket, data: bytes, more: int) -> None:
        """Send ``data`` and then ``more`` bytes of zeros, until the client closes."""
        try:
            self._send(connection, data)
            while more > 0 and self.running():
                self._send(connection, bytes(min(more, 1 << 16)))
                more -= 1 << 16
        except OSError:
            return  # the client is gone

    def _drip(self, connection: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if not self.running():
                return
            try:
                connection.sendall(data[index : index + 1])
            except OSError:
                return  # the client is gone
            self.stopped.wait(1.0)


def closed_port_url() -> str:
    """The address of a port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
