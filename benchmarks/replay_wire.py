"""The replay benchmark's wire check: both sides must send the same requests, with the live values.

A capturing HTTP server hands out another id and token than the recorded ones; one user of
each side runs against it, and the first iteration that arrived (method, path, headers, body)
must be the same on both sides and carry the values handed out.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

from harness import free_port, log
from replay_sides import ours_args, plain_args, run_tree
from replay_workload import OK, WIRE_ITEM_ID, WIRE_TOKEN, WORKLOAD, created, workload, write_recording

# Headers that depend on the connection or the target, not on the side.
_CONNECTION_HEADERS = {"host", "connection", "content-length"}


class _Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple] = []
    lock = threading.Lock()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = tuple(sorted((k.lower(), v) for k, v in self.headers.items() if k.lower() not in _CONNECTION_HEADERS))
        with self.lock:
            self.seen.append((self.command, self.path, headers, body))
        # Like nginx in the timed runs, but handing out other values than the recorded ones:
        # the requests after it must carry these, on both sides.
        if self.command == "POST" and self.path == "/api/items":
            status, ctype, answer = 201, "application/json", created(WIRE_ITEM_ID, WIRE_TOKEN)
        else:
            status, ctype, answer = OK
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


def first_iteration(seen: list[tuple]) -> list[tuple]:
    n = len(WORKLOAD)
    return seen[:n]


def wire_check(tmp: Path) -> None:
    """One user, one short run per side against a capturing server: the first iteration must match."""
    captured = {}
    for side in ("ours", "plain"):
        port = free_port()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Capture)
        _Capture.seen = []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        recordings = tmp / f"wire-recordings-{side}"
        recordings.mkdir()
        write_recording(recordings, "127.0.0.1", port)
        url = f"http://127.0.0.1:{port}"
        args = (ours_args(recordings, url, 1, 2, tmp / "wire-ours.json") if side == "ours"
                else plain_args(url, 1, 2, tmp / "wire-plain"))
        try:
            code, _wall, _cpu, _mid = run_tree(args, tmp, tmp / f"wire-{side}.log", timeout=60)
        finally:
            server.shutdown()
            server.server_close()
        if code != 0:
            raise RuntimeError(f"wire check: {side} exited with code {code}; see {tmp / f'wire-{side}.log'}")
        captured[side] = first_iteration(_Capture.seen)
        if len(captured[side]) < len(WORKLOAD):
            raise RuntimeError(f"wire check: {side} sent {len(captured[side])} requests, expected >= {len(WORKLOAD)}")
    if captured["ours"] != captured["plain"]:
        for i, (a, b) in enumerate(zip(captured["ours"], captured["plain"], strict=True)):
            if a != b:
                raise RuntimeError(f"wire check: request {i + 1} differs\n  ours:  {a}\n  plain: {b}")
    # The live values, not the recorded ones: what the wire server handed out.
    expected = [(m, p, tuple(sorted((k.lower(), v) for k, v in h)), b or b"")
                for m, p, h, b, _n, _r in workload(WIRE_ITEM_ID, WIRE_TOKEN)]
    for i, ((m, p, h, b), (em, ep, eh, eb)) in enumerate(zip(captured["ours"], expected, strict=True)):
        if (m, p, b) != (em, ep, eb) or not set(eh) <= set(h):
            raise RuntimeError(f"wire check: request {i + 1} is not the workload's, with the live values\n"
                               f"  sent:     {(m, p, h, b)}\n  expected: {(em, ep, eh, eb)}")
    summary = json.loads((tmp / "wire-ours.json").read_text())
    if summary["unsourced"] or summary["divergences"]:
        raise RuntimeError(f"wire check: ours sent recorded values or diverged: unsourced {summary['unsourced']}, "
                           f"divergences {summary['divergences']}")
    log(f"wire check: both sides send the same {len(WORKLOAD)} requests "
        f"(method, path, {len(captured['ours'][0][2])}+ headers, bodies), with the id and token that the "
        f"server handed out ({WIRE_ITEM_ID}, {WIRE_TOKEN}), not the recorded ones")

