"""Which redacted values a replay needs from its user: the secrets, known before anything is sent.

The recorder writes ``«redacted:xxxxxxxx»`` instead of a secret. At replay a placeholder is
filled live when a correlation replaces it (its value, or the text a rule injects over),
or when some response handed it out (a server-issued token: correlated, or sent as
recorded with correlation off); a ``--data-map`` column supplies one for each user. Any
other placeholder that a request sends is a secret only the user knows, taken from
``REPLAY_SECRET_XXXXXXXX``: a replay that lacks one should refuse to start rather than fail
each session's first request for the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus

from traffic_replay.correlation.detection import detect, request_texts, uses_in
from traffic_replay.correlation.model import Correlation, Use
from traffic_replay.correlation.rules import Rule, apply_rules
from traffic_replay.format import Request, Session
from traffic_replay.redacted import PLACEHOLDER, secret_env_name


@dataclass(frozen=True, slots=True)
class Secret:
    """One placeholder that one session sends and only the user can supply."""

    placeholder: str
    """``«redacted:1a2b3c4d»``, as recorded."""
    env: str
    """``REPLAY_SECRET_1A2B3C4D``: where a replay looks for its value."""
    session: str
    """The session's name."""
    uses: tuple[Use, ...]
    """Where it is sent: each use's ``step`` (0-based), ``place`` and header ``name``."""

    def where(self) -> str:
        """``session 'log in' step 2 body, step 3 header X-Api-Key`` (steps 1-based, as users count)."""
        places = ", ".join(f"step {u.step + 1} {u.place}{' ' + u.name if u.name else ''}" for u in self.uses)
        return f"session {self.session!r} {places}" if places else f"session {self.session!r}"


def _sent(request: Request) -> set[str]:
    """Placeholders a request sends, raw or percent-encoded (URLs and form bodies)."""
    # Percent-encoding leaves the letters be: a text without the word holds no placeholder.
    return {m.group() for _, _, text in request_texts(request) if "redacted" in text
            for m in PLACEHOLDER.finditer(unquote_plus(text))}


def _sent_by(requests: Sequence[tuple[int, Request]]) -> dict[int, set[str]]:
    """The placeholders each request sends, by step, for those that send any."""
    return {step: sent for step, request in requests if (sent := _sent(request))}


def _requests(session: Session, steps: Iterable[int] | None) -> list[tuple[int, Request]]:
    """(step, request) for ``steps`` (all by default): each request taken once, for a session decoded as its
    requests are taken (``traffic_replay.piecewise``)."""
    requests = session.requests
    return list(enumerate(requests)) if steps is None else [(step, requests[step]) for step in steps]


# A placeholder as an answer may spell it: JSON escapes (ensure_ascii) or HTML entities for « ».
_SPELLED = re.compile(r"\\u00ab|\\u00bb|&laquo;|&raquo;|&#171;|&#187;|&#x[aA][bB];|&#x[bB][bB];", re.IGNORECASE)


def _handed_out(requests: Sequence[tuple[int, Request]]) -> set[str]:
    """Placeholders some recorded response has: server-issued values, redacted at record time."""
    found: set[str] = set()
    for _, request in requests:
        response = request.response
        if response is None:
            continue
        texts = [value for _, value in response.headers]
        if response.body is not None and response.body.encoding == "text":
            texts.append(response.body.data)
        for text in texts:
            if "redacted" in text:
                found.update(m.group() for m in PLACEHOLDER.finditer(_SPELLED.sub(_unspell, text)))
    return found


def _unspell(m: re.Match[str]) -> str:
    return "«" if m.group().lower() in ("\\u00ab", "&laquo;", "&#171;", "&#xab;") else "»"


def _uses(session: Session, value: str) -> list[Use]:
    return [u for step, r in enumerate(session.requests) for u in uses_in(r, step, value)]


def session_secrets(session: Session, correlations: Sequence[Correlation],
                    data_map: Mapping[str, str] | None = None, steps: Iterable[int] | None = None) -> list[Secret]:
    """The secrets ``session`` needs, by placeholder; ``correlations`` as the replay has them.

    ``correlations`` are the session's detected ones with the rules applied (none with
    correlation off); ``data_map`` is ``--data-map`` as {recorded value: column}. A data-mapped
    placeholder counts as supplied only where it is sent, as the replay fills it. ``steps``:
    the only requests that may hold a placeholder (``piecewise.Requests.placeholder_steps``),
    when the caller knows them: the others are not looked at.
    """
    return _secrets(session, _requests(session, steps), correlations, data_map or {})


def _secrets(session: Session, requests: Sequence[tuple[int, Request]], correlations: Sequence[Correlation],
             data_map: Mapping[str, str], sent_by: dict[int, set[str]] | None = None) -> list[Secret]:
    sent_by = sent_by if sent_by is not None else _sent_by(requests)
    variables = [c for c in correlations if c.value not in data_map]
    for recorded in data_map:
        uses = _uses(session, recorded)
        if uses:
            variables.append(Correlation(recorded, uses=uses))
    # A placeholder that a correlation replaces (its value, or the text a rule injects over) has a live source.
    sourced = {c.value for c in variables} | {u.recorded for c in variables for u in c.uses if u.recorded}
    # A placeholder some response handed out is a server-issued token, not the user's secret.
    sourced |= _handed_out(requests)
    needed = sorted(set().union(*sent_by.values()) - sourced)
    at = dict(requests) if needed else {}
    return [Secret(p, secret_env_name(p), session.name,
                   tuple(u for step, sent in sent_by.items() if p in sent for u in uses_in(at[step], step, p)))
            for p in needed]


def needed_secrets(sessions: Iterable[Session], correlate: bool = True, rules: Sequence[Rule] | None = None,
                   data_map: Mapping[str, str] | None = None) -> list[Secret]:
    """Every secret a replay of ``sessions`` needs with these settings, session by session.

    Detection runs only for a session that sends a placeholder no response handed out:
    without one it needs no secret whatever its correlations are.
    """
    found: list[Secret] = []
    for session in sessions:
        requests = _requests(session, None)
        sent_by = _sent_by(requests)
        sent = set().union(*sent_by.values())
        if not sent or not sent - _handed_out(requests):
            continue
        # A detected correlation sources a placeholder only when an answer has it, which
        # ``_handed_out`` sees without detection; a rule may inject over one wherever it likes.
        correlations = apply_rules(session, list(rules), detect(session)) if correlate and rules else []
        found += _secrets(session, requests, correlations, data_map or {}, sent_by)
    return found


def missing_secrets(secrets: Iterable[Secret], environ: Mapping[str, str]) -> list[Secret]:
    """The secrets whose variable ``environ`` does not set (an empty value is a value)."""
    return [s for s in secrets if s.env not in environ]


def describe_missing(missing: Sequence[Secret]) -> str:
    """One line naming every missing variable, where its value is first sent, and the alternative."""
    by_env: dict[str, list[Secret]] = {}
    for secret in missing:
        by_env.setdefault(secret.env, []).append(secret)
    parts = []
    for env, items in sorted(by_env.items()):
        more = f" and {len(items) - 1} more session{'s' if len(items) > 2 else ''}" if len(items) > 1 else ""
        parts.append(f"{env} (for {items[0].placeholder}, sent in {items[0].where()}{more})")
    count = f"{len(by_env)} redacted secret{'s' if len(by_env) != 1 else ''}"
    return (f"the recordings send {count} nobody supplied: set {', '.join(parts)};"
            " or map a --data column to each (--data-map COLUMN=«redacted:…»)")
