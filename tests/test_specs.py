"""The option grammars: each a pure parser, a typed value or a ``ValueError`` saying what is wrong."""

from __future__ import annotations

import pytest

from traffic_replay.settings import Settings
from traffic_replay.specs import (
    DataColumn,
    HostMapping,
    NamePattern,
    parse_data_column,
    parse_host_mapping,
    parse_name_pattern,
)

pytestmark = pytest.mark.timeout(10)


def test_the_replay_grammars_parse_into_typed_values() -> None:
    assert parse_host_mapping("API.example.com:443=https://127.0.0.1:9000/") == HostMapping(
        "api.example.com:443", "https://127.0.0.1:9000")
    assert parse_name_pattern(r"^/a=b(c)=\1") == NamePattern(r"^/a=b(c)", r"\1")
    assert parse_data_column(" user =lin=x") == DataColumn("user", "lin=x")


@pytest.mark.parametrize(("parse", "text", "says"), [
    (parse_host_mapping, "api.example.com", "ORIGINAL_HOST"),
    (parse_host_mapping, "api.example.com=ftp://x", "http(s)"),
    (parse_name_pattern, "no-equals-sign", "REGEX=NAME"),
    (parse_name_pattern, "(unclosed=name", "not a regular expression"),
    (parse_data_column, "user", "COLUMN=RECORDED_VALUE"),
])
def test_a_bad_value_says_what_is_wrong(parse: object, text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse(text)  # type: ignore[operator]


def test_settings_hold_parsed_values_and_rebuild_from_their_serialised_form(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.build(map_host=["api.test=http://127.0.0.1:9"], name_pattern=[r"^/x=X"],
                              data_map=["user=lin"], rules=None, speed=0)
    assert settings.map_host == [HostMapping("api.test", "http://127.0.0.1:9")]
    # A worker's own environment must not override what the master sent, "unset" included.
    monkeypatch.setenv("REPLAY_RULES", "/elsewhere/rules.toml")
    monkeypatch.setenv("REPLAY_SPEED", "3")
    monkeypatch.setenv("REPLAY_MASTER_HOST", "10.0.0.9")
    local = Settings.build()
    rebuilt = Settings.from_serialised(settings.serialised(), local=local)
    assert rebuilt.rules is None and rebuilt.speed == 0
    assert rebuilt.map_host == settings.map_host and rebuilt.data_map == [DataColumn("user", "lin")]
    assert rebuilt.master_host == "10.0.0.9", "where a worker finds its master is its own setting"
    assert Settings.from_serialised(settings.serialised()) == settings
