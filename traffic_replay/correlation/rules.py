"""Correlation rules written by hand, for what the detector cannot find (a TOML file).

    [[rule]]
    name = "csrf"                 # shown by `replay inspect` and in failure reasons
    html_input = "csrf_token"     # extract from: json, header, cookie, html_input, html_meta or regex
    from_path = "^/signin"        # optional: only responses to requests whose path matches
    inject = ["header:X-CSRF-Token", "form:csrf_token"]   # optional, see below

Without ``inject``, the live value replaces the recorded one wherever it appears in the
requests that follow, as for detected correlations. With ``inject``, it also replaces
whatever the recording had at those places, even when it differs (a value that was
redacted, or rotated): ``header:NAME``, ``form:FIELD``, ``query:PARAM``, ``json:PATH``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from traffic_replay.correlation.detection import json_leaves, uses_in
from traffic_replay.correlation.extraction import compile_extractor, recorded_view
from traffic_replay.correlation.model import Correlation, ExtractKind, Source, Use
from traffic_replay.errors import ConfigError
from traffic_replay.format import Request, Session
from traffic_replay.inputs import read_regular

_KINDS: tuple[ExtractKind, ...] = ("json", "header", "cookie", "html_input", "html_meta", "regex")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    json_path: str | None = Field(None, alias="json")
    header: str | None = None
    cookie: str | None = None
    html_input: str | None = None
    html_meta: str | None = None
    regex: str | None = None
    from_path: str | None = None
    inject: list[Annotated[str, Field(pattern=r"^(header|form|query|json):.+$")]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> Rule:
        given = [k for k in _KINDS if self.key(k) is not None]
        if len(given) != 1:
            raise ValueError(f"rule '{self.name}' needs exactly one of {', '.join(_KINDS)} (has {len(given)})")
        return self

    @field_validator("regex", "from_path")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                # As it is used: a regex reads a response's bytes (where (?u) or \N{...} is refused), a path is text.
                re.compile(value.encode() if info.field_name == "regex" else value)
            except re.error as e:
                raise ValueError(f"'{value}' is not a valid regular expression: {e}") from e
        return value

    def key(self, kind: ExtractKind) -> str | None:
        return self.json_path if kind == "json" else getattr(self, kind)

    @property
    def kind(self) -> ExtractKind:
        return next(k for k in _KINDS if self.key(k) is not None)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: list[Rule] = Field(default_factory=list)


def load_rules(path: Path) -> list[Rule]:
    try:
        data = tomllib.loads(read_regular(path).decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:  # TOML is UTF-8, whatever the locale says
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {e.start}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{path}: not valid TOML: nested too deep") from e
    try:
        return RulesFile.model_validate(data).rule
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from e


def _recorded_at(request: Request, place: str) -> list[tuple[Use, str]]:
    """The recorded text at an inject place of ``request``, as (use, text) pairs."""
    kind, _, name = place.partition(":")
    found: list[tuple[Use, str]] = []
    if kind == "header":
        found += [(Use(-1, "header", n), v) for n, v in request.headers if n.lower() == name.lower()]
    elif kind == "query":
        query = parse_qsl(urlsplit(request.path).query)
        found += [(Use(-1, "path", "", "quote_plus"), v) for k, v in query if k == name]
    elif request.body is not None and request.body.encoding == "text":
        if kind == "form":
            found += [(Use(-1, "body", "", "quote_plus"), v) for k, v in parse_qsl(request.body.data) if k == name]
        else:
            try:
                leaves = dict(json_leaves(orjson.loads(request.body.data)))
            except orjson.JSONDecodeError:
                leaves = {}
            if name in leaves:
                found.append((Use(-1, "body"), leaves[name]))
    return found


def apply_rules(session: Session, rules: list[Rule], detected: list[Correlation]) -> list[Correlation]:
    """``detected`` plus what ``rules`` declare; a rule wins over detection for the same value."""
    by_value = {c.value: c for c in detected}
    for rule in rules:
        kind = rule.kind
        source_key = rule.key(kind) or ""
        extract = compile_extractor(Source(0, kind, source_key))
        from_path = re.compile(rule.from_path) if rule.from_path else None
        for step, request in enumerate(session.requests):
            if from_path is not None and not from_path.search(request.path):
                continue
            view = recorded_view(request)
            value = extract(view) if view is not None else None
            if not value:
                continue
            correlation = by_value.get(value) or Correlation(value)
            correlation.rule = rule.name
            correlation.sources.append(Source(step, kind, source_key))
            by_value[value] = correlation
            for later in range(step + 1, len(session.requests)):
                target = session.requests[later]
                known = {(u.step, u.place, u.name) for u in correlation.uses}
                for use in uses_in(target, later, value):
                    if (use.step, use.place, use.name) not in known:
                        correlation.uses.append(use)
                for place in rule.inject:
                    for use, text in _recorded_at(target, place):
                        correlation.uses.append(Use(later, use.place, use.name, use.encoding, recorded=text))
    return [c for c in by_value.values() if c.uses]

