"""Templates, extractors and the prepared steps that the replay loop runs."""

from __future__ import annotations

import pytest

from replayer.prepared import prepare_session
from traffic_replay.correlation import ResponseView, Source, build_template, compile_extractor
from traffic_replay.hosts import HostMap
from traffic_replay.specs import parse_host_mapping

from factories import answered, make_request, make_session

pytestmark = pytest.mark.timeout(10)


def view(content: bytes = b"", headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
         ) -> ResponseView:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return ResponseView(lambda n: lowered.get(n.lower()), content, (cookies or {}).get)


def test_a_template_fills_every_occurrence_with_its_encoding() -> None:
    template = build_template("/a/1000/b?x=1000&y=t%2B1", [(0, "raw", "1000"), (1, "quote_plus", "t%2B1")])
    assert template is not None
    assert template.render(["2001", "s+2"]) == "/a/2001/b?x=2001&y=s%2B2"
    assert build_template("/a/10001", [(0, "raw", "1000")]) is None


@pytest.mark.parametrize(("source", "response", "value"), [
    (Source(0, "json", "listing.id"), view(b'{"listing": {"id": 1001}}'), "1001"),
    (Source(0, "json", "items.1.id"), view(b'{"items": [{"id": 1}, {"id": 22}]}'), "22"),
    (Source(0, "json", "items.5.id"), view(b'{"items": []}'), None),
    (Source(0, "html_input", "csrf_token"), view(b'<input value="v&amp;1" type="hidden" name="csrf_token">'), "v&1"),
    (Source(0, "html_input", "csrf_token"), view(b"<input type='hidden' name='csrf_token' value='abc'>"), "abc"),
    (Source(0, "html_meta", "csrf-token"), view(b'<meta name="csrf-token" content="m-1">'), "m-1"),
    (Source(0, "header", "Location", "/orders/", "?tab=1"), view(headers={"location": "/orders/77?tab=1"}), "77"),
    (Source(0, "header", "X-CSRF-Token"), view(headers={"X-Csrf-Token": " t-5 "}), "t-5"),
    (Source(0, "cookie", "XSRF"), view(cookies={"XSRF": "c-9"}), "c-9"),
    (Source(0, "regex", r"order #(\d+)"), view(b"<p>order #31337 placed</p>"), "31337"),
])
def test_extractors_read_live_responses(source: Source, response: ResponseView, value: str | None) -> None:
    assert compile_extractor(source)(response) == value


def test_prepared_steps_patch_only_what_carries_live_values() -> None:
    session = make_session([
        answered(make_request("/api/listings", "POST", 201), '{"listing": {"id": 1042}}'),
        make_request("/api/listings/1042", headers=[("Accept", "application/json"), ("Cookie", "sid=x")]),
        make_request("/about"),
    ])
    prepared = prepare_session(session, speed=1.0)
    first, second, third = prepared.steps
    assert [var for var, _ in first.extract] == [0] and first.patch is None
    assert second.patch is not None and second.patch.path is not None
    assert second.patch.path.render(["2077"]) == "/api/listings/2077"
    assert "Cookie" not in second.headers, "each user has its own cookie jar"
    assert third.patch is None and third.extract == ()
    assert second.name == "/api/listings/{id}"
    assert prepare_session(session, speed=1.0, correlate=False).steps[1].patch is None


def test_think_time_is_divided_by_speed() -> None:
    session = make_session([make_request("/a", offset_ms=0, duration_ms=100),
                            make_request("/b", offset_ms=600, duration_ms=10)])
    assert [s.think for s in prepare_session(session, speed=1.0).steps] == [0.0, 0.5]
    assert [s.think for s in prepare_session(session, speed=4.0).steps] == [0.0, 0.125]
    assert [s.think for s in prepare_session(session, speed=0).steps] == [0.0, 0.0]


def test_unmapped_hosts_are_skipped_and_mapped_ones_go_where_told() -> None:
    session = make_session([make_request("/a", port=8000), make_request("/b", host="cdn.example", port=443),
                            make_request("/c", host="api.example", port=443)])
    hosts = HostMap("http://127.0.0.1:9000", "127.0.0.1:8000", [parse_host_mapping("api.example=http://127.0.0.1:9100")])
    steps = prepare_session(session, 1.0, hosts).steps
    assert [(s.url, s.skip) for s in steps] == [
        ("/a", None), ("http://cdn.example:443/b", "host cdn.example:443 not mapped"),
        ("http://127.0.0.1:9100/c", None)]


def test_a_missing_secret_names_its_variable() -> None:
    body = b"user=lin&password=%C2%ABredacted%3A0a1b2c3d%C2%BB"
    form = "application/x-www-form-urlencoded"
    session = make_session([make_request("/login", "POST", body=body, content_type=form)])
    prepared = prepare_session(session, 1.0, environ={})
    assert prepared.missing is not None and "REPLAY_SECRET_0A1B2C3D" in prepared.missing
    supplied = prepare_session(session, 1.0, environ={"REPLAY_SECRET_0A1B2C3D": "p@ss word"})
    assert supplied.missing is None
    step = supplied.steps[0]
    assert step.patch is not None and step.patch.body is not None
    assert step.patch.body.render(list(supplied.initial)) == "user=lin&password=p%40ss+word"


def test_a_data_column_replaces_a_recorded_value() -> None:
    session = make_session([make_request("/login", "POST", body=b"username=lin&password=x",
                                         content_type="application/x-www-form-urlencoded"),
                            make_request("/users/lin")])
    prepared = prepare_session(session, 1.0, data_map={"lin": "username"})
    assert prepared.data == ((0, "username"),)
    values = ["ada"]
    assert prepared.steps[0].patch.body.render(values) == "username=ada&password=x"  # type: ignore[union-attr]
    assert prepared.steps[1].patch.path.render(values) == "/users/ada"  # type: ignore[union-attr]


def test_live_names_go_into_paths_and_json_leaves_the_client_composed_around_them() -> None:
    session = make_session([
        answered(make_request("/api/contents", "POST", 201), '{"name": "Untitled Folder", "type": "directory"}',
                 status=201),
        make_request("/api/contents/Untitled%20Folder", "PATCH", body=b'{"path": "done/Untitled Folder", "n": 1}',
                     content_type="application/json"),
        make_request("/api/contents/done/Untitled%20Folder?recursive=1", "DELETE", 204),
    ])
    prepared = prepare_session(session, speed=1.0)
    move, delete = prepared.steps[1].patch, prepared.steps[2].patch
    assert move is not None and move.path is not None and move.body is not None
    assert delete is not None and delete.path is not None
    assert move.path.render(['Untitled Folder 2"']) == "/api/contents/Untitled%20Folder%202%22"
    assert move.body.render(['Untitled Folder 2"']) == '{"path":"done/Untitled Folder 2\\"","n":1}'
    assert delete.path.render(["Untitled Folder 2"]) == "/api/contents/done/Untitled%20Folder%202?recursive=1"


def test_only_the_json_leaf_that_holds_the_id_is_replaced() -> None:
    session = make_session([
        answered(make_request("/api/cart", "POST", 201, body=b'{"quantity": 1}', content_type="application/json"),
                 '{"id": 1, "quantity": 1}', status=201),
        make_request("/api/orders", "POST", body=b'{"quantity": 1, "cart_id": 1, "note": "1"}',
                     content_type="application/json"),
    ])
    patch = prepare_session(session, speed=1.0).steps[1].patch
    assert patch is not None and patch.body is not None
    assert patch.body.render(["12"]) == '{"quantity":1,"cart_id":12,"note":"1"}'
    assert patch.body.render(["a-7"]) == '{"quantity":1,"cart_id":"a-7","note":"1"}'
