"""What a loaded recording holds once: each string and header pair that repeats, shared, and checked for
what a replay could not send as it is shared (every loading path goes through it: a file, a payload)."""

from __future__ import annotations

import binascii
import re
from itertools import islice
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from traffic_replay.format import Header, Request

__all__ = ["Shared", "unsendable_header"]


class Shared:
    """One object for each string and header pair that repeats across a recording.

    A recording says the same things again and again: the same ``User-Agent`` and
    ``Accept`` pairs on every request, the same method, host and content type. Decoded,
    each would be an object of its own (two thirds of a loaded recording's memory);
    shared, a loaded recording holds little more than its JSON.
    """

    __slots__ = ("pairs", "answered", "strings")

    def __init__(self) -> None:
        self.pairs: dict[Header, Header] = {}
        """Request header pairs, each checked once as it is added (``_check_headers``)."""
        self.answered: dict[Header, Header] = {}
        """Response header pairs not sent in any request (never checked: nobody sends them)."""
        self.strings: dict[str, str] = {}

    def request(self, request: Request, index: int) -> Request:
        """``request`` holding the shared objects; a ``ValueError`` naming the field if it cannot be replayed.

        Checked here, where each distinct header pair is seen once: a line break in a header or a
        path would split the request it is sent in (a hostile file's way to send what it likes),
        and a body that says base64 and is not would fail each replay of its session.
        """
        path = request.path
        if not path.isprintable() or " " in path:
            raise ValueError(f"field 'requests.{index}.path': a space, line break or control character")
        pairs, strings, put = self.pairs.setdefault, self.strings.setdefault, msgspec.structs.force_setattr
        known = len(self.pairs)
        request.headers[:] = [pairs(h, h) for h in request.headers]
        if added := len(self.pairs) - known:  # pairs not seen before: the dict's last keys, in insertion order
            self._check_headers(request.headers, index, set(islice(reversed(self.pairs), added)))
        response = request.response
        for where, body in (("body", request.body), ("response.body", response.body if response else None)):
            if body is not None and body.encoding == "base64":
                try:
                    _check_base64(body.data)
                except binascii.Error as e:
                    raise ValueError(f"field 'requests.{index}.{where}': data is not base64 ({e})") from None
                except ValueError:  # a2b_base64's word for text that is not ASCII
                    raise ValueError(f"field 'requests.{index}.{where}': data is not base64 (a character outside"
                                     " its alphabet)") from None
        for name in ("method", "host", "scheme", "http_version"):
            value = getattr(request, name)
            put(request, name, strings(value, value))
        if request.body is not None and request.body.content_type is not None:
            put(request.body, "content_type", strings(request.body.content_type, request.body.content_type))
        if response is not None:
            sent, answered = self.pairs.get, self.answered.setdefault
            response.headers[:] = [sent(h) or answered(h, h) for h in response.headers]
            put(response, "reason", strings(response.reason, response.reason))
            if response.body is not None and response.body.content_type is not None:
                put(response.body, "content_type", strings(response.body.content_type, response.body.content_type))
        return request

    def _check_headers(self, headers: list[Header], index: int, fresh: set[Header]) -> None:
        # Only the pairs new here: a request id unique to each request must not make every request's
        # other headers checked again (a bad pair is never kept, so it is always new where it is sent).
        for n, pair in enumerate(headers):
            if pair not in fresh or (what := unsendable_header(*pair)) is None:
                continue
            for new in fresh:  # none of them counts as checked: another file may send them too
                self.pairs.pop(new, None)
            raise ValueError(f"field 'requests.{index}.headers.{n}': the header's {what}")


def unsendable_header(name: str, value: str) -> str | None:
    """What keeps a request header from being sent (it would split the request), or None: what an importer
    checks per entry, before a session holds it."""
    if not _HEADER_NAME(name):
        return "name is not an HTTP token"
    return "value has a line break or control character" if _UNSENDABLE_VALUE(value) else None


_HEADER_NAME = re.compile(r":?[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch  # (":authority": HTTP/2's, dropped at replay)
_UNSENDABLE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search


def _check_base64(data: str, chunk: int = 1 << 20) -> None:
    """A ``binascii.Error`` unless ``data`` is strict base64; piece by piece, so that an enormous body is not
    decoded whole a first time just to be checked."""
    data_end = len(data)
    if data_end % 4 or data.find("=", 0, max(data_end - 2, 0)) != -1:
        raise binascii.Error("Incorrect padding")
    for at in range(0, data_end, chunk):
        binascii.a2b_base64(data[at:at + chunk], strict_mode=True)
