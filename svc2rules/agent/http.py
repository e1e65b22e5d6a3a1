"""A minimal HTTP/1.1 server on asyncio, for the probes the agent answers: load balancers'
health checks, /healthz, /livez and /metrics. One request per connection (the answer closes
it), GET and HEAD only, headers bounded: nothing here needs more, and nothing more is exposed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

_MAX_HEADER_BYTES = 16 * 1024
_READ_TIMEOUT = 10.0
_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    400: "Bad Request",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[str], Response]  # path -> response


def encode(response: Response, *, head: bool = False) -> bytes:
    reason = _REASONS.get(response.status, "")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    headers = {**response.headers, "Content-Length": str(len(response.body)), "Connection": "close"}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else response.body)


async def _serve(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        writer.close()
        return
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3:
        response, method = Response(400, b"bad request\n"), "GET"
    else:
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        response = handler(path) if method in ("GET", "HEAD") else Response(405, b"method not allowed\n")
    with contextlib.suppress(ConnectionError):
        writer.write(encode(response, head=method == "HEAD"))
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def start(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Listen on host:port (raises OSError when it cannot) and answer with `handler`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(handler, reader, writer)

    return await asyncio.start_server(serve, host or None, port, limit=_MAX_HEADER_BYTES, reuse_address=True)


def split_address(address: str, flag: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) -> (host, port); `:PORT` listens everywhere."""
    from svc2rules.errors import UsageError

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{flag}: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
