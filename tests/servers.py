"""Small real servers on 127.0.0.1 for recorder tests: an HTTPS API (HTTP/1.1 and HTTP/2)
with a self-signed certificate, WebSocket echo and raw TCP echo. Each runs in a thread of
the test process, on a free port, and stops when its ``with`` block ends.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

ACCESS_TOKEN = "tls-access-token-6e1f0c"
SESSION_COOKIE = "tls-session-cookie-9a3b"


def self_signed_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate and key for ``host`` (an IP address), signed by themselves; (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "traffic-replay test target")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "target-cert.pem", directory / "target-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _api(method: str, path: str, authorization: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """A tiny API: POST /token hands out a bearer token and a session cookie, GET /me wants the token."""
    headers = [("content-type", "application/json")]
    if method == "POST":
        headers.append(("set-cookie", f"sid={SESSION_COOKIE}; Path=/; HttpOnly; Secure"))
        return 200, headers, orjson.dumps({"access_token": ACCESS_TOKEN, "token_type": "bearer"})
    if path == "/me" and authorization != f"Bearer {ACCESS_TOKEN}":
        return 401, headers, orjson.dumps({"error": "token required"})
    return 200, headers, orjson.dumps({"user": "ada"} if path == "/me" else {"path": path})


class _ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test reads ``server.seen`` instead

    def _serve(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append((self.command, self.path, self.request_version))
        status, headers, body = _api(self.command, self.path, self.headers.get("Authorization"))
        self.send_response(status)
        for name, value in [*headers, ("content-length", str(len(body)))]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve


def _serve_h2(sock: ssl.SSLSocket, seen: list[tuple[str, str, str]]) -> None:
    conn = H2Connection(config=H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    requests: dict[int, dict[str, str]] = {}
    while data := sock.recv(65536):
        for event in conn.receive_data(data):
            if isinstance(event, RequestReceived):
                requests[event.stream_id] = {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                request = requests.pop(event.stream_id)
                seen.append((request[":method"], request[":path"], "HTTP/2"))
                status, headers, body = _api(request[":method"], request[":path"], request.get("authorization"))
                conn.send_headers(event.stream_id, [(":status", str(status)), *headers,
                                                    ("content-length", str(len(body)))])
                conn.send_data(event.stream_id, body, end_stream=True)
        sock.sendall(conn.data_to_send())


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, str, str]]

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket) and request.selected_alpn_protocol() == "h2":
            _serve_h2(request, self.seen)
        else:
            super().finish_request(request, client_address)


@contextmanager
def tls_api(cert: Path, key: Path) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """An HTTPS API on 127.0.0.1 speaking HTTP/2 or HTTP/1.1 (ALPN): (base URL, (method, path, version) seen)."""
    server = _ApiServer(("127.0.0.1", 0), _ApiHandler)
    server.seen = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="tls api", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _serve_one_at_a_time(listener: socket.socket, handle: Any, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(5)
            try:
                handle(conn)
            except OSError:
                pass


@contextmanager
def _listening(handle: Any) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_serve_one_at_a_time, args=(listener, handle, stop), daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _websocket_echo(conn: socket.socket) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        data = conn.recv(65536)
        if not data:
            return
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Request):
                conn.sendall(ws.send(AcceptConnection()))
            elif isinstance(event, TextMessage):
                conn.sendall(ws.send(TextMessage(data=f"echo: {event.data}")))
            elif isinstance(event, CloseConnection):
                conn.sendall(ws.send(event.response()))
                return


@contextmanager
def websocket_echo() -> Iterator[int]:
    """A WebSocket server on 127.0.0.1 that echoes text messages; yields its port."""
    with _listening(_websocket_echo) as port:
        yield port


def _tcp_echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@contextmanager
def tcp_echo() -> Iterator[int]:
    """A plain TCP echo server on 127.0.0.1 (not HTTP at all); yields its port."""
    with _listening(_tcp_echo) as port:
        yield port


def websocket_roundtrip_via_proxy(proxy_port: int, ws_port: int, text: str) -> str:
    """Open a WebSocket to 127.0.0.1:ws_port through an explicit HTTP proxy, send ``text``, return the reply."""
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{ws_port}", target=f"http://127.0.0.1:{ws_port}/chat")))
        reply: str | None = None
        while reply is None:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("the proxy closed the WebSocket")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    sock.sendall(ws.send(TextMessage(data=text)))
                elif isinstance(event, TextMessage):
                    reply = event.data if isinstance(event.data, str) else str(event.data)
        sock.sendall(ws.send(CloseConnection(code=1000)))
        return reply


def tcp_roundtrip_via_proxy(proxy_port: int, tcp_port: int, payload: bytes) -> bytes:
    """CONNECT through an explicit proxy to a raw TCP server, send ``payload``, return the echo."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{tcp_port} HTTP/1.1\r\nHost: 127.0.0.1:{tcp_port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"the proxy closed the CONNECT: {head!r}")
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        sock.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            chunk = sock.recv(4096)
            if not chunk:
                break
            echoed += chunk
        return echoed
