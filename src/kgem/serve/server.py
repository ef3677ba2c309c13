"""Running a served model's app under uvicorn: in the foreground (``kgem serve``), or in a thread of this process on
a free port for tests and benchmarks (``running``). uvicorn is part of the optional extra ``kgem[serve]``.

The listening socket is bound here, before uvicorn starts, so an address in use or not available is an ``OSError``
of the caller's (the CLI prints it as one line) rather than a log line and an exit inside uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kgem.errors import KgemError
from kgem.serve import require_serve

START_SECONDS = 30.0  # how long a server in a thread may take to start listening


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in ("localhost", "::1") or host.startswith("127.")


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), IPv6 for an address with a colon. Its protocol is
    named: asyncio sets TCP_NODELAY only on connections whose socket says TCP, and without it a response's body
    waits for the client's delayed ACK of its headers (some 40 ms on Linux) on every kept-alive connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def server(app: Any, log_level: str) -> Any:
    """A uvicorn server of ``app``, not yet started."""
    require_serve("uvicorn")
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug")))


def serve(app: Any, sock: socket.socket, log_level: str = "info") -> None:
    """Serve ``app`` on the bound socket ``sock`` (``bind``) until interrupted (uvicorn's own Ctrl-C handling)."""
    server(app, log_level).run(sockets=[sock])


@contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """``app`` served by uvicorn in a daemon thread on ``host:port`` (port 0: a free one); yields the base URL once
    the server listens, and stops it on leaving."""
    background = server(app, log_level)
    with bind(host, port) as sock:
        address = url(host, sock.getsockname()[1])
        thread = threading.Thread(target=background.run, kwargs={"sockets": [sock]}, daemon=True, name="kgem-serve")
        thread.start()
        try:
            deadline = time.monotonic() + START_SECONDS
            while not background.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise KgemError(f"the server on {address} did not start")
                time.sleep(0.01)
            yield address
        finally:
            background.should_exit = True
            thread.join(START_SECONDS)
