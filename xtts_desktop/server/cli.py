"""`xtts-desktop serve`: load the model once and serve the streaming endpoint over HTTP."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from xtts_desktop.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
API_KEY_VARIABLE = "XTTS_DESKTOP_API_KEY"
MAX_QUEUE = 1000


def register(commands: Any, add_model_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `serve` to the `xtts-desktop` subcommands."""
    serve = commands.add_parser(
        "serve",
        help="serve the streaming endpoint over HTTP (POST /predict)",
        description=(
            'Serve XTTS over HTTP: POST /predict with JSON {"text", "language", "voice", '
            '"chunk_size", "speed"} streams raw PCM (s16le, 24 kHz, mono); GET /voices and '
            "GET /health answer JSON. One synthesis runs at a time; others wait in a queue."
        ),
    )
    add_model_options(serve)
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}, this computer only)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT})",
    )
    serve.add_argument(
        "--api-key",
        help=(
            "require the header 'Authorization: Api-Key KEY' "
            f"(default: ${API_KEY_VARIABLE}, else no key)"
        ),
    )
    serve.add_argument(
        "--queue",
        type=int,
        default=4,
        help="requests that may wait while one is synthesized (default: 4)",
    )
    serve.set_defaults(handler=cmd_serve)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this computer's loopback."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def open_listening_socket(host: str, port: int) -> socket.socket:
    """Bind now, before the model loads, so a busy port is reported at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise UserError(
            f"Cannot listen on '{host}': it is not an address or a known host name."
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    if os.name != "nt":
        # Lets a restarted server reuse the port at once; on Windows it would allow two listeners.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise UserError(
                f"Port {port} on {host} is already in use; choose another with --port."
            ) from None
        if error.errno == errno.EACCES:
            raise UserError(
                f"Not allowed to listen on port {port} (ports below 1024 need administrator "
                "rights); choose another with --port."
            ) from None
        if error.errno == errno.EADDRNOTAVAIL:
            raise UserError(
                f"{host} is not an address of this computer; use 127.0.0.1, 0.0.0.0 "
                "or one of its addresses."
            ) from None
        raise UserError(
            f"Cannot listen on {host} port {port} ({error.strerror or error})."
        ) from None
    return sock


def _api_key(args: argparse.Namespace) -> str | None:
    key = args.api_key
    if key is None:
        # An empty variable counts as unset, as shells and service files often leave it.
        key = os.environ.get(API_KEY_VARIABLE) or None
    if key is None:
        return None
    key = key.strip()
    if not key:
        raise UserError("The API key is empty; give a key or leave --api-key out.")
    if any(c.isspace() or not c.isprintable() for c in key) or not key.isascii():
        raise UserError("The API key must be printable ASCII characters without spaces.")
    return key


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from xtts_desktop.server.app import create_app
    except ImportError as error:
        raise UserError(
            f"'xtts-desktop serve' needs the packages starlette and uvicorn ({error}): "
            "pip install starlette uvicorn"
        ) from None
    from xtts_desktop.cli import eprint, load_engine, voice_library
    from xtts_desktop.engine.voices import builtin_voices

    host = args.host.strip()
    if not host:
        raise UserError("--host is empty; give an address such as 127.0.0.1 or 0.0.0.0.")
    if not 1 <= args.port <= 65535:
        raise UserError(f"Port {args.port} is not a port number; choose one between 1 and 65535.")
    if not 0 <= args.queue <= MAX_QUEUE:
        raise UserError(f"--queue {args.queue} is out of range; choose between 0 and {MAX_QUEUE}.")
    api_key = _api_key(args)

    sock = open_listening_socket(host, args.port)
    try:
        if api_key is None and not is_loopback(host):
            eprint(
                f"warning: listening on {host} without an API key: anyone who can reach port "
                f"{args.port} can use this server (add --api-key)."
            )
        loaded, synthesizer = load_engine(args)
        builtins = builtin_voices(loaded)
        if builtins:
            synthesizer.warm_up(next(iter(builtins.values())))
        app = create_app(synthesizer, voice_library(), api_key=api_key, queue_size=args.queue)
        shown_host = f"[{host}]" if ":" in host else host
        eprint(
            f"Serving XTTS ({loaded.describe()}) at http://{shown_host}:{args.port}: "
            "POST /predict, GET /voices, GET /health. Ctrl+C stops."
        )
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging: the log file, and our own warnings on stderr
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
            server_header=False,
        )
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            # uvicorn has already shut down gracefully; it re-raises the Ctrl+C it caught.
            pass
    finally:
        sock.close()
    eprint("Server stopped.")
    return 0
