"""A fake Hugging Face Hub on loopback: resolve endpoints, a CDN with Range, faults on demand."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from xtts_desktop.download import MODEL_FILES, REPO_ID

# Files stored in git LFS on the real Hub (redirected to the CDN, sha256 ETag); the rest are
# plain git files (served by the Hub itself, git blob sha1 ETag).
LFS_SUFFIXES = (".pth",)
CHUNK = 256 * 1024


@dataclass(frozen=True)
class SeenRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]  # names in lower case

    @property
    def filename(self) -> str:
        """The model file asked for (CDN addresses carry it as ?name=)."""
        parts = urlsplit(self.path)
        named = parse_qs(parts.query).get("name")
        return named[0] if named else unquote(parts.path.rsplit("/", 1)[-1])


@dataclass
class _Served:
    name: str
    path: Path
    size: int
    etag: str  # sha256 (LFS) or git blob sha1
    lfs: bool


@dataclass
class FakeHub:
    """Serves ``model_dir``'s files as ``repo_id`` at one commit, the way the Hub does.

    Faults: ``drop_after[name] = n`` cuts the connection after n body bytes of the next GET of
    that file (once); ``hold_after[name] = n`` sends n bytes of the next GET, then waits for
    ``release`` (once); ``corrupt`` serves altered bytes under the original checksum;
    ``required_token`` answers 401 (gated) to requests without that bearer token.
    """

    model_dir: Path
    repo_id: str = REPO_ID
    files: tuple[str, ...] = MODEL_FILES
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    drop_after: dict[str, int] = field(default_factory=dict)
    hold_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    required_token: str | None = None

    def __post_init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self.release = threading.Event()
        self.holding = threading.Event()  # set while a GET waits for `release`
        self.body_bytes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.served: dict[str, _Served] = {}
        for name in self.files:
            path = self.model_dir / name
            data = path.read_bytes()
            lfs = name.endswith(LFS_SUFFIXES)
            if lfs:
                etag = hashlib.sha256(data).hexdigest()
            else:
                etag = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
            self.served[name] = _Served(name, path, len(data), etag, lfs)
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        self._hub.daemon_threads = self._cdn.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def start(self) -> FakeHub:
        for server in (self._hub, self._cdn):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        if not self._threads:
            return
        self.release.set()
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests look at ------------------------------------------------------------

    def seen(self, method: str | None = None, filename: str | None = None) -> list[SeenRequest]:
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if (method is None or r.method == method)
            and (filename is None or r.filename == filename)
        ]

    # -- the server ------------------------------------------------------------------------

    def _handler(self, role: str) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                hub._answer(self, role, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, role, head=False)

        return Handler

    def _answer(self, handler: BaseHTTPRequestHandler, role: str, head: bool) -> None:
        headers = {key.lower(): value for key, value in handler.headers.items()}
        request = SeenRequest(role, handler.command, handler.path, headers)
        with self._lock:
            self.requests.append(request)
        path = urlsplit(handler.path).path
        if role == "cdn":
            match = re.fullmatch(r"/blobs/([0-9a-f]{64})", path)
            served = next((s for s in self.served.values() if match and s.etag == match[1]), None)
            if served is None:
                return self._error(handler, 404, "EntryNotFound")
            return self._send_file(handler, served, head, {})
        prefix = f"/{self.repo_id}/resolve/"
        if not path.startswith(prefix):
            # The real Hub answers 401 for a repository that does not exist (or is private).
            return self._error(handler, 401, "RepoNotFound")
        revision, _, name = unquote(path[len(prefix) :]).partition("/")
        if self.required_token is not None:
            if handler.headers.get("Authorization") != f"Bearer {self.required_token}":
                return self._error(handler, 401, "GatedRepo")
        if revision not in ("main", self.commit):
            return self._error(handler, 404, "RevisionNotFound")
        served = self.served.get(name)
        if served is None:
            return self._error(handler, 404, "EntryNotFound")
        headers = {"X-Repo-Commit": self.commit}
        if served.lfs:
            headers.update(
                {
                    "Location": f"{self.cdn}/blobs/{served.etag}?name={name}",
                    "X-Linked-Etag": f'"{served.etag}"',
                    "X-Linked-Size": str(served.size),
                    "ETag": f'"{hashlib.sha1(served.etag.encode()).hexdigest()}"',
                    "Content-Length": "0",
                }
            )
            handler.send_response(302)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            return None
        headers["ETag"] = f'"{served.etag}"'
        return self._send_file(handler, served, head, headers)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
        body = f'{{"error": "{code}"}}'.encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _send_file(
        self, handler: BaseHTTPRequestHandler, served: _Served, head: bool, headers: dict[str, str]
    ) -> None:
        start = 0
        status = 200
        wanted = handler.headers.get("Range")
        if wanted and not head:
            match = re.fullmatch(r"bytes=(\d+)-", wanted.strip())
            if match is None or int(match[1]) >= served.size:
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{served.size}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            start, status = int(match[1]), 206
        handler.send_response(status)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(served.size - start))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{served.size - 1}/{served.size}")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if head:
            return
        with self._lock:
            cut_at = self.drop_after.pop(served.name, None)
            hold_at = self.hold_after.pop(served.name, None)
        flip_at = served.size // 2 if served.name in self.corrupt else None
        sent = 0
        with open(served.path, "rb") as source:
            source.seek(start)
            position = start
            while block := source.read(CHUNK):
                if flip_at is not None and position <= flip_at < position + len(block):
                    index = flip_at - position
                    block = block[:index] + bytes([block[index] ^ 0xFF]) + block[index + 1 :]
                if cut_at is not None and sent + len(block) >= cut_at:
                    block = block[: cut_at - sent]
                if hold_at is not None and sent >= hold_at:
                    hold_at = None
                    self.holding.set()
                    self.release.wait(timeout=60)
                    self.holding.clear()
                try:
                    handler.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(block)
                position += len(block)
                if cut_at is not None and sent >= cut_at:
                    handler.close_connection = True
                    break
        with self._lock:
            self.body_bytes[served.name] = self.body_bytes.get(served.name, 0) + sent


def point_hugging_face_at(server: FakeHub, monkeypatch, hf_home: Path) -> None:
    """HF_ENDPOINT at the fake Hub, a fresh HF_HOME, no token, not offline; coqui's switch
    restored after the test (agreeing sets it in os.environ)."""
    from xtts_desktop.download import COQUI_TOS_SWITCH

    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for name in ("HF_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(COQUI_TOS_SWITCH, "")
    monkeypatch.delenv(COQUI_TOS_SWITCH)
