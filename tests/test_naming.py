from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traffic_replay import naming
from traffic_replay.naming import StatsNamer, endpoint_template, segment_template
from traffic_replay.specs import parse_name_pattern

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("path", "name"), [
    ("/", "/"),
    ("/items/42", "/items/{id}"),
    ("/items/42?page=2&q=x", "/items/{id}"),
    ("/api/items?page=2", "/api/items"),
    ("/u/550e8400-e29b-41d4-a716-446655440000/cart", "/u/{uuid}/cart"),
    ("/objects/5f2b7c9a1e4d", "/objects/{hex}"),
    ("/t/eyJhbGciOiJIUzI1NiJ9abc123", "/t/{token}"),
    ("/v1/facade/items/", "/v1/facade/items/"),
])
def test_ids_become_placeholders(path: str, name: str) -> None:
    assert endpoint_template(path) == name


def test_the_naming_switch_and_patterns() -> None:
    assert StatsNamer("path")("/items/42?page=2") == "/items/42"
    assert StatsNamer("url")("/items/42?page=2") == "/items/42?page=2"
    namer = StatsNamer("template", [parse_name_pattern(r"^/api/v\d+/(\w+)=/api/\1"),
                                    parse_name_pattern(r"\?q==search")])
    assert namer("/api/v2/orders/77") == "/api/orders"
    assert namer("/items?q=lamp") == "search"
    assert namer("/items/9") == "/items/{id}"


def _every_pattern(segment: str) -> str:
    return next((placeholder for pattern, placeholder in naming._PLACEHOLDERS if pattern.match(segment)), segment)


@given(st.text(alphabet="0123456789abcdef", max_size=24) | st.uuids().map(str)
       | st.text(alphabet="0123456789abcdefABCDEF-_.~=+%/xyzé١", max_size=40))
def test_a_short_segment_is_named_as_every_pattern_would_name_it(segment: str) -> None:
    """The shortcut for short segments (only a number is an id under 8 characters) changes no name."""
    assert segment_template(segment) == _every_pattern(segment)
