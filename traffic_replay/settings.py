"""The one settings class of traffic-replay, and its one serialised form.

Read, in order of precedence, from CLI flags (passed as keyword arguments), ``REPLAY_*``
environment variables and an optional ``.env`` file; ``BASE_URL`` is accepted for the
target. Grammars are parsed when the settings are built (``traffic_replay.specs``), so
every process holds parsed values and a bad one is refused before anything starts.

One instance per process, built once: the CLI builds it from its flags and hands it to
the mitmproxy or Locust process it starts as one JSON document (``serialised``, in
``REPLAY_SETTINGS``), which that process reads with its own environment switched off
(``from_serialised``); a Locust master ships the same document to every worker, whose
own ``REPLAY_*`` variables then count only for what is per machine (``PER_MACHINE``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from traffic_replay.errors import ConfigError
from traffic_replay.naming import NamingMode
from traffic_replay.specs import (
    DataColumn,
    HostMapping,
    NamePattern,
    compile_patterns,
    parse_base_url,
    parse_data_column,
    parse_host,
    parse_host_mapping,
    parse_mode,
    parse_name_pattern,
    parse_session_key,
    parse_timespan,
)
from traffic_replay.thresholds import Threshold, parse_threshold

ENV_PREFIX = "REPLAY_"
SERIALISED_ENV = "REPLAY_SETTINGS"
"""The variable a child process finds its settings in (``Settings.serialised``)."""

PER_MACHINE = frozenset({"master", "worker", "master_host", "master_port", "master_bind_host", "master_bind_port",
                         "processes", "web_host", "web_port", "web_login", "web_user", "debug", "cache_dir"})
"""Settings a worker keeps from its own flags and environment: where it runs, not what it replays."""

T = TypeVar("T")

# True while settings are rebuilt from their serialised form: flags only, no environment, no .env.
_sources_off: ContextVar[bool] = ContextVar("sources_off", default=False)


def _each(parse: Callable[[str], T]) -> BeforeValidator:
    """Parse each text item of a list; items already parsed (a serialised form) pass as they are."""
    return BeforeValidator(lambda items: [parse(i) if isinstance(i, str) else i for i in items])


class Settings(BaseSettings):
    """Every setting of recording and replaying. Field docs feed the README's table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore",
                                      populate_by_name=True, validate_default=True)

    # Replay
    recordings: Path = Field(Path("recordings"), description="Directory of session files to replay or inspect.")
    skip_bad: bool = Field(False, description="Replay (or inspect) the good session files of a directory with bad "
                           "ones, each bad one named on stderr and counted; by default one stops the run.")
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
        60.0, description="Seconds a whole request may take (connect, send, the last byte of the answer) before it "
        "counts as failed.")
    connect_timeout: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Seconds to connect before a request counts as failed (within --timeout; "
        "default: --timeout).")
    headless: bool = Field(False, description="Run without the web UI.")
    web_host: str = Field("127.0.0.1", description="Address of the Locust web UI.")
    web_port: Annotated[int, Field(ge=1, le=65535)] = Field(8089, description="Port of the Locust web UI.")
    web_login: bool = Field(False, description="Put the web UI behind a login page: `web_user`, with the password "
                                               "in `REPLAY_WEB_PASSWORD`.")
    web_user: str = Field("replay", description="The user name of the web UI's login page (`--web-login`).")
    csv: str | None = Field(None, description="Prefix of Locust's CSV stats files.")
    html: Path | None = Field(
        None, description="Write the run's own HTML report here: one self-contained file, charts included.")
    locust_html: Path | None = Field(None, description="Write Locust's own HTML report here.")
    summary_json: Path | None = Field(None, description="Write the run summary as JSON here.")
    fail_on: Annotated[list[Threshold], _each(parse_threshold)] = Field(
        default_factory=list, description="A threshold the run must hold, e.g. p95<500ms, errors<1%, "
        "sessions_failed==0 (repeatable; the variable takes a JSON list); a broken one exits 4.")
    fail_on_abort: bool = Field(
        False, description="End the run as soon as a threshold can no longer hold (a count past its limit).")
    quiet: bool = Field(False, description="No live progress line while the run goes on.")
    locust_stats: bool = Field(False, description="Also print Locust's own stats table every few seconds (headless).")
    prometheus_port: Annotated[int, Field(ge=0, le=65535)] | None = Field(
        None, description="Serve Prometheus metrics on this port (the master, or the single process).")
    prometheus_host: str = Field("127.0.0.1", description="Address of the Prometheus endpoint.")
    prometheus_linger: Annotated[float, Field(ge=0)] = Field(
        0.0, description="Seconds the Prometheus endpoint stays up after the run, for a last scrape.")
    check: bool = Field(True, description="Check that the target answers before a run.")
    check_timeout: Annotated[float, Field(gt=0)] = Field(5.0, description="Seconds to wait for the preflight check.")
    correlate: bool = Field(True, description="Carry server-issued values (tokens, ids) over live; off to compare.")
    rules: Path | None = Field(None, description="TOML file of correlation rules the detector cannot find.")
    cache: bool = Field(True, description="Remember what the detector finds in each session file, by the file's "
                        "content, so that the next inspect or run of it skips detection; off to detect afresh.")
    cache_dir: Path | None = Field(None, description="Where that is remembered (default: $XDG_CACHE_HOME/traffic-replay"
                                   " or ~/.cache/traffic-replay); safe to delete at any time.")
    map_host: Annotated[list[HostMapping], _each(parse_host_mapping)] = Field(
        default_factory=list, description="ORIGINAL=URL: send a recorded host's requests to URL (repeatable).")
    names: NamingMode = Field("template", description="Stats names: template (/items/{id}), path or url.")
    name_pattern: Annotated[list[NamePattern], _each(parse_name_pattern)] = Field(
        default_factory=list, description="REGEX=NAME: name matching requests NAME in the stats (repeatable).")
    data: Path | None = Field(None, description="CSV file: each virtual user gets its own row.")
    data_map: Annotated[list[DataColumn], _each(parse_data_column)] = Field(
        default_factory=list, description="COLUMN=RECORDED: a data column replaces a recorded value (repeatable).")

    # Distributed runs (Locust's master and workers)
    master: bool = Field(False, description="Run as the master of a distributed run: workers connect to it.")
    worker: bool = Field(False, description="Run as a worker: replay what the master at --master-host sends.")
    expect_workers: Annotated[int, Field(ge=1)] = Field(
        1, description="Master: start when this many workers hold the recordings (headless).")
    master_host: str = Field("127.0.0.1", description="Worker: address of the master.")
    master_port: Annotated[int, Field(ge=1, le=65535)] = Field(5557, description="Worker: port of the master.")
    master_bind_host: str = Field(
        "127.0.0.1", description="Master: address workers connect to (0.0.0.0 for workers on other machines).")
    master_bind_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        5557, description="Master: port workers connect to.")
    processes: int | None = Field(
        None, description="Fork this many worker processes on this machine (-1: one per core), with a master.")

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
    redaction_key_file: Path | None = Field(
        None, description="Use this redaction key file (created if missing) instead of the recordings directory's "
        "own key in the user's config directory: to share placeholders on purpose.")
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

    @model_validator(mode="after")
    def _one_role(self) -> Settings:
        if self.master and self.worker:
            raise ValueError("choose --master or --worker, not both")
        if self.processes is not None and (self.processes == 0 or self.processes < -1):
            raise ValueError(f"--processes {self.processes}: give a number of processes, or -1 for one per core")
        return self

    @field_validator("host")
    @classmethod
    def _host_is_url(cls, value: str | None) -> str | None:
        return None if value is None else parse_base_url(value)

    @field_validator("run_time")
    @classmethod
    def _run_time_parses(cls, value: str | None) -> str | None:
        if value is not None and parse_timespan(value) <= 0:
            raise ValueError(f"'{value}': a run must last at least a second")
        return value

    @field_validator("mode")
    @classmethod
    def _mode_is_known(cls, value: str) -> str:
        return parse_mode(value)

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
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _sources_off.get():
            return (init_settings,)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @classmethod
    def build(cls, **flags: Any) -> Settings:
        """Settings from the given flags (``None`` means "not given") over env and ``.env``."""
        given = {k: v for k, v in flags.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as e:
            raise _config_error(e) from e

    def serialised(self) -> str:
        """Every setting, unset ones included (``null``): what a child process or a worker is built from."""
        return orjson.dumps(self.model_dump(mode="json")).decode()

    def environ(self) -> dict[str, str]:
        """The variables that hand these settings to a child process."""
        return {SERIALISED_ENV: self.serialised()}

    @classmethod
    def from_serialised(cls, text: str | bytes, local: Settings | None = None) -> Settings:
        """Settings as serialised, with no environment or ``.env`` over them; ``local``'s per-machine ones kept."""
        values = orjson.loads(text)
        if local is not None:
            values.update(local.model_dump(include=set(PER_MACHINE)))
        token = _sources_off.set(True)
        try:
            return cls(**values)
        except ValidationError as e:
            raise _config_error(e) from e
        finally:
            _sources_off.reset(token)

    @classmethod
    def of_process(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """This process's settings: as the CLI handed them over, else from the environment (``locust -f``)."""
        serialised = environ.get(SERIALISED_ENV)
        return cls.from_serialised(serialised) if serialised else cls.build()


WEB_PASSWORD_ENV = "REPLAY_WEB_PASSWORD"


def web_password(environ: Mapping[str, str]) -> str:
    """The password of the web UI's login page: only ever from the environment, so no ``ps`` and no worker sees it."""
    if not (password := environ.get(WEB_PASSWORD_ENV)):
        raise ConfigError(f"--web-login needs the password in {WEB_PASSWORD_ENV} (a variable, not a flag: "
                          "flags show in ps)")
    return password


def _config_error(e: ValidationError) -> ConfigError:
    """The first problem of a validation, as one line naming the setting, its flag and its variable."""
    first = e.errors(include_url=False)[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    msg = first["msg"].removeprefix("Value error, ")
    if not name:
        return ConfigError(msg)
    return ConfigError(f"setting '{name}' (--{name.replace('_', '-')}, {ENV_PREFIX}{name.upper()}): {msg}")


