from __future__ import annotations

import pytest

from traffic_replay.naming import endpoint_template

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
