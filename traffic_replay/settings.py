"""The one settings class of traffic-replay.

Read, in order of precedence, from CLI flags (passed as keyword arguments), ``REPLAY_*``
environment variables and an optional ``.env`` file; ``BASE_URL`` is accepted for the
target. One instance per process: the CLI builds it, and hands it to the Locust or
mitmproxy process it starts as environment variables (``to_env``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from traffic_replay.errors import ConfigError
from traffic_replay.naming import NamingMode
from traffic_replay.record_specs import compile_patterns, parse_host, parse_session_key

ENV_PREFIX = "REPLAY_"


class Settings(BaseSettings):
    """Every setting of recording and replaying. Field docs feed the README's table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
                                      populate_by_name=True, validate_default=True)

    # Replay
    recordings: Path = Field(Path("recordings"), description="Directory of session files to replay or inspect.")
    host: str | None = Field(None, validation_alias=AliasChoices("host", "REPLAY_HOST", "BASE_URL"),
                             description="Target base URL, e.g. http://127.0.0.1:8000 (also BASE_URL).")
    users: Annotated[int, Field(ge=1)] = Field(10, description="Peak number of concurrent virtual users.")
    spawn_rate: Annotated[float, Field(gt=0)] = Field(10.0, description="Users started per second.")
    run_time: str | None = Field(None, description="Stop after this long, e.g. 30s, 5m, 1h30m.")
    speed: Annotated[float, Field(ge=0)] = Field(
        1.0, description="Divides the recorded think time; 0 replays as fast as the target answers.")
    session_rate: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Open model: start this many sessions per second in all, whatever the target's latency.")
    arrivals: Literal["constant", "poisson"] = Field(
        "constant", description="Open model: evenly spaced session starts, or Poisson arrivals.")
    timeline: bool = Field(False, description="Start sessions at their recorded start times (divided by --speed).")
    parallel_overlaps: bool = Field(
        False, description="Send requests that overlapped in the recording (assets) concurrently, as browsers do.")
    timeout: Annotated[float, Field(gt=0)] = Field(
        60.0, description="Seconds a request may take (connect or answer) before it counts as failed.")
    headless: bool = Field(False, description="Run without the web UI.")
    web_host: str = Field("127.0.0.1", description="Address of the Locust web UI.")
    web_port: Annotated[int, Field(ge=1, le=65535)] = Field(8089, description="Port of the Locust web UI.")
    csv: str | None = Field(None, description="Prefix of Locust's CSV stats files.")
    html: Path | None = Field(None, description="Write Locust's HTML report here.")
    summary_json: Path | None = Field(None, description="Write the run summary as JSON here.")
    check: bool = Field(True, description="Check that the target answers before a run.")
    check_timeout: Annotated[float, Field(gt=0)] = Field(5.0, description="Seconds to wait for the preflight check.")
    correlate: bool = Field(True, description="Carry server-issued values (tokens, ids) over live; off to compare.")
    rules: Path | None = Field(None, description="TOML file of correlation rules the detector cannot find.")
    map_host: list[str] = Field(default_factory=list,
                                description="ORIGINAL=URL: send a recorded host's requests to URL (repeatable).")
    names: NamingMode = Field("template", description="Stats names: template (/items/{id}), path or url.")
    name_pattern: list[str] = Field(default_factory=list,
                                    description="REGEX=NAME: name matching requests NAME in the stats (repeatable).")
    data: Path | None = Field(None, description="CSV file: each virtual user gets its own row.")
    data_map: list[str] = Field(default_factory=list,
                                description="COLUMN=RECORDED: a data column replaces a recorded value (repeatable).")

    # Record
    mode: str = Field("regular",
                      description="mitmproxy mode: regular (explicit proxy), reverse:URL or upstream:PROXY_URL.")
    listen_host: str = Field("127.0.0.1", description="Address the recording proxy listens on.")
    listen_port: Annotated[int, Field(ge=0, le=65535)] = Field(8080, description="Port the recording proxy listens on.")
    idle_gap: Annotated[float, Field(gt=0)] = Field(30.0, description="Seconds of silence that end a session.")
    body_cap: Annotated[int, Field(ge=0)] = Field(
        256 * 1024, description="Bytes of each response body kept in the recording.")
    session_key: str = Field("client", description="What makes a session: client, cookie:NAME or header:NAME.")
    max_session: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Seconds a session may last before it is split; none for no limit.")
    allow_host: list[str] = Field(default_factory=list,
                                  description="Record only these hosts (repeatable; example.com, *.example.com).")
    exclude: list[str] = Field(default_factory=list,
                               description="Do not record URLs matching this regular expression (repeatable).")
    static: bool = Field(True, description="Record static assets (images, fonts, CSS, JS, media); off drops them.")
    redact: bool = Field(True, description="Redact secrets at record time (--no-redact turns it off, loudly).")
    redact_header: list[str] = Field(default_factory=list,
                                     description="Further header names whose values are redacted (repeatable).")
    redact_field: list[str] = Field(default_factory=list,
                                    description="Further JSON, form and query field names to redact (repeatable).")
    ca_dir: Path | None = Field(None, description="Where mitmproxy keeps its CA (default ~/.mitmproxy).")
    ssl_insecure: bool = Field(False, description="Do not verify the certificates of recorded HTTPS servers.")
    live: bool = Field(True, description="Show live counters on stderr while recording.")
    journal_fsync: Annotated[float, Field(ge=0)] = Field(
        1.0, description="Seconds between fsyncs of the crash journal (0: every flow); a kill loses nothing anyway.")

    # Import
    import_per: Literal["file", "page"] = Field(
        "file", description="One session per HAR file (a user's journey) or per HAR page (`replay import --per`).")

    debug: bool = Field(False, description="Show tracebacks and debug logs.")

    @model_validator(mode="after")
    def _one_model(self) -> Settings:
        if self.timeline and self.session_rate is not None:
            raise ValueError("choose --timeline or --session-rate, not both")
        return self

    @field_validator("host")
    @classmethod
    def _host_is_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL like http://127.0.0.1:8000")
        return value.rstrip("/")

    @field_validator("mode")
    @classmethod
    def _mode_is_known(cls, value: str) -> str:
        if value == "regular":
            return value
        kind, _, url = value.partition(":")
        if kind in ("reverse", "upstream") and urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname:
            return value
        raise ValueError(f"'{value}' is not 'regular', 'reverse:http(s)://HOST[:PORT]' "
                         "or 'upstream:http(s)://PROXY[:PORT]'")

    # The recorder's own parsers: a bad value is refused here, in one line, before mitmproxy starts.
    @field_validator("session_key")
    @classmethod
    def _session_key_parses(cls, value: str) -> str:
        parse_session_key(value)
        return value

    @field_validator("allow_host")
    @classmethod
    def _hosts_parse(cls, value: list[str]) -> list[str]:
        for host in value:
            parse_host(host)
        return value

    @field_validator("exclude")
    @classmethod
    def _exclude_compiles(cls, value: list[str]) -> list[str]:
        compile_patterns(value)
        return value

    @classmethod
    def build(cls, **flags: Any) -> Settings:
        """Settings from the given flags (``None`` means "not given") over env and ``.env``."""
        given = {k: v for k, v in flags.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            name = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise ConfigError(f"setting '{name}' ({ENV_PREFIX}{name.upper()}): {msg}" if name else msg) from e

    def to_env(self) -> dict[str, str]:
        """These settings as ``REPLAY_*`` variables, to hand to a child process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            if isinstance(value, bool):
                env[f"{ENV_PREFIX}{name.upper()}"] = str(value).lower()
            elif isinstance(value, list | dict):
                env[f"{ENV_PREFIX}{name.upper()}"] = orjson.dumps(value).decode()  # pydantic-settings reads JSON
            else:
                env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env


