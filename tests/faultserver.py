"""A fault-injecting HTTP/1.1 target on 127.0.0.1, in a thread of the test process, on raw sockets.

Raw sockets, not ``http.server``: the faults are things a well-behaved server library would
never do (cut a body short with an RST, drop a keep-alive connection without a word, dribble
a body a byte at a time), and the test must control every byte. Each fault is one function
from the request to what goes on the wire; ``FaultServer.seen`` counts the requests that
arrived, so that a test can assert what the target received and not only what the replay says.

A stalled *connect* needs no server code at all: ``stalled_listener`` is a listener whose
accept queue is full and that never accepts, so the kernel drops further SYNs and the
client's connect hangs until its own timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

Next = Literal["keep", "close", "hold"]
"""After an answer: read the next request, close the connection, or hold it open unread until the server stops."""
Fault = Callable[[socket.socket, bytes], Next]
"""Answer one request (its head) on ``conn``, and say what becomes of the connection."""

LARGE_BODY = 8 * 1024 * 1024
"""The large response: far beyond the recorder's body cap (256 KiB) and any recorded body."""


def _response(status: int, body: bytes, *, close: bool = False, length: int | None = None) -> bytes:
    head = (f"HTTP/1.1 {status} {'OK' if status < 400 else 'Service Unavailable'}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body) if length is None else length}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


def _rst(conn: socket.socket) -> None:
    """Close with linger 0: the peer gets an RST, not a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def ok(conn: socket.socket, head: bytes) -> Next:
    conn.sendall(_response(200, b"ok"))
    return "keep"


def reset_before_answering(conn: socket.socket, head: bytes) -> Next:
    """The request is read, then an RST instead of an answer."""
    _rst(conn)
    return "close"


def reset_mid_response(conn: socket.socket, head: bytes) -> Next:
    """Headers promise 10,000 bytes, 100 arrive, then an RST."""
    conn.sendall(_response(200, b"x" * 100, length=10_000))
    time.sleep(0.05)  # the head and the first bytes reach the client before the reset
    _rst(conn)
    return "close"


def stall(conn: socket.socket, head: bytes) -> Next:
    """Read the request, never answer: the connection stays open until the server stops."""
    return "hold"


def slow(delay: float) -> Fault:
    """A correct answer after ``delay`` seconds."""
    def answer(conn: socket.socket, head: bytes) -> Next:
        time.sleep(delay)
        conn.sendall(_response(200, b"ok"))
        return "keep"
    return answer


def trickle(gap: float, size: int) -> Fault:
    """The head at once, then the body one byte every ``gap`` seconds: each read returns in time,
    the whole response does not."""
    def answer(conn: socket.socket, head: bytes) -> Next:
        conn.sendall(_response(200, b"", length=size))
        for _ in range(size):
            time.sleep(gap)
            conn.sendall(b"x")
        return "keep"
    return answer


def close_after_each(conn: socket.socket, head: bytes) -> Next:
    """A whole response that does not say ``Connection: close``, then the connection is closed anyway."""
    conn.sendall(_response(200, b"ok"))
    return "close"


def storm(status: int) -> Fault:
    def answer(conn: socket.socket, head: bytes) -> Next:
        conn.sendall(_response(status, b"upstream unavailable"))
        return "keep"
    return answer


def large(conn: socket.socket, head: bytes) -> Next:
    conn.sendall(_response(200, b"L" * LARGE_BODY))
    return "keep"


class FaultServer:
    """Serves ``fault`` to every request on every connection, one thread per connection."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self.listener.getsockname()[1]
        self.seen = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._accept, name="fault server", daemon=True))
        self._threads[0].start()

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        try:
            while not self._stop.is_set():
                if b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                # The recordings these tests replay send GETs: no request body to skip.
                with self._lock:
                    self.seen += 1
                conn.settimeout(None)
                after = self.fault(conn, head)
                conn.settimeout(0.2)
                if after == "hold":
                    self._stop.wait()
                if after != "keep":
                    return
        except OSError:
            pass  # the client went away: its side of the story is in the replay's stats
        finally:
            conn.close()


@contextmanager
def fault_server(fault: Fault) -> Iterator[FaultServer]:
    server = FaultServer(fault)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def stalled_listener() -> Iterator[int]:
    """A port whose connects hang: a listener with a backlog of 0, its queue filled, never accepting."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    # Linux queues backlog + 1 connections; the rest of the SYNs are dropped (and retried by the
    # client) once the queue is full. Fill it until a connect no longer completes at once.
    try:
        for _ in range(8):
            s = socket.socket()
            s.settimeout(0.3)
            fillers.append(s)
            try:
                s.connect(("127.0.0.1", port))
            except (TimeoutError, OSError):
                break
        else:
            raise AssertionError("the listener's accept queue never filled: connects would not stall")
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
