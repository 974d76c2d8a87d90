"""Recording filters (pure): allowed hosts, excluded URLs, static assets."""

from __future__ import annotations

import pytest

from recorder.filters import (
    EXCLUDED,
    HOST_NOT_ALLOWED,
    STATIC,
    FlowFilter,
    HostPattern,
    compile_patterns,
    is_static,
    parse_host,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("text", "pattern"), [
    ("Example.COM", HostPattern("example.com")),
    ("example.com:8443", HostPattern("example.com", 8443)),
    ("*.example.com", HostPattern("*.example.com")),
    ("127.0.0.1:8000", HostPattern("127.0.0.1", 8000)),
    ("::1", HostPattern("::1")),
    ("[::1]:8080", HostPattern("::1", 8080)),
])
def test_host_patterns_parse(text: str, pattern: HostPattern) -> None:
    assert parse_host(text) == pattern


@pytest.mark.parametrize(("text", "message"), [
    ("http://example.com", "not a URL"),
    ("example.com/api", "not a URL"),
    ("example.com:http", "not a port number"),
    ("example.com:70000", "not a port number"),
    ("", "not a host name"),
    ("bad host", "not a host name"),
])
def test_bad_hosts_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_host(text)


def test_bad_patterns_name_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"'\(' is not a regular expression"):
        compile_patterns(["ok", "("])


def test_no_filter_is_inactive_and_skips_nothing() -> None:
    flow_filter = FlowFilter()
    assert not flow_filter.active
    assert flow_filter.skip_reason("any", 80, "http://any/logo.png", "/logo.png", "image/png") is None


def test_allowed_hosts_by_name_port_and_subdomain() -> None:
    flow_filter = FlowFilter(allow_hosts=["shop.test", "api.test:8443", "*.cdn.test"])
    assert flow_filter.active
    allowed = [("shop.test", 80), ("SHOP.test", 443), ("api.test", 8443), ("img.cdn.test", 443), ("a.b.cdn.test", 80)]
    refused = [("api.test", 443), ("cdn.test", 443), ("other.test", 80), ("evilshop.test", 80)]
    for host, port in allowed:
        assert flow_filter.skip_reason(host, port, f"http://{host}/", "/", None) is None, host
    for host, port in refused:
        assert flow_filter.skip_reason(host, port, f"http://{host}/", "/", None) == HOST_NOT_ALLOWED, host


def test_excluded_urls_match_anywhere_in_the_url() -> None:
    flow_filter = FlowFilter(exclude=[r"/health$", r"^https://metrics\."])
    assert flow_filter.skip_reason("a", 80, "http://a/health", "/health", None) == EXCLUDED
    assert flow_filter.skip_reason("metrics.a", 443, "https://metrics.a/x", "/x", None) == EXCLUDED
    assert flow_filter.skip_reason("a", 80, "http://a/healthy", "/healthy", None) is None


@pytest.mark.parametrize(("path", "content_type", "static"), [
    ("/app.js", None, True),
    ("/style.CSS?v=3", "text/css; charset=utf-8", True),
    ("/fonts/a.woff2", None, True),
    ("/avatar", "image/png", True),  # no extension: the content type says it
    ("/api/items.json", "application/json", False),
    ("/items", "text/html", False),
    ("/v1.2/items", "application/json", False),  # a dot in a directory is not an extension
])
def test_static_assets_by_extension_or_content_type(path: str, content_type: str | None, static: bool) -> None:
    assert is_static(path, content_type) is static
    dropping = FlowFilter(static=False)
    assert dropping.skip_reason("a", 80, f"http://a{path}", path, content_type) == (STATIC if static else None)
    assert FlowFilter(static=True).skip_reason("a", 80, f"http://a{path}", path, content_type) is None
