"""Credential shapes (pure): each one found wherever it is, near-misses left alone, bytes kept as they were."""

from __future__ import annotations

import base64

import orjson
import pytest

from recorder.patterns import SHAPES, PatternRedactor
from traffic_replay.redacted import placeholder

pytestmark = pytest.mark.timeout(10)

KEY = b"p" * 32


def b64url(document: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()


def jwt(subject: str, alg: str = "HS256") -> str:
    """A JWS as servers hand them out: header, payload, signature."""
    signature = base64.urlsafe_b64encode(subject.encode() * 8).rstrip(b"=").decode()
    return f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url({'sub': subject, 'exp': 1900000000})}.{signature}"


def p(value: str) -> str:
    return placeholder(KEY, value)


@pytest.fixture
def shapes() -> PatternRedactor:
    return PatternRedactor(lambda value: placeholder(KEY, value))


AWS = "AKIAIOSFODNN7EXAMPLE"
STRIPE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
GITHUB = "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8"
GITHUB_PAT = "github_pat_11ABCDEFG0" + "x" * 60
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize("secret", [jwt("ada"), jwt("bob", alg="none").rsplit(".", 1)[0] + ".", AWS,
                                    "ASIAY34FZKBOKMUTVV7A", STRIPE, "rk_live_" + "0" * 24, GITHUB, GITHUB_PAT, SLACK])
def test_each_shape_is_found_in_text_urls_and_bytes(shapes: PatternRedactor, secret: str) -> None:
    assert shapes.text(f'<script>var t = "{secret}";</script>') == f'<script>var t = "{p(secret)}";</script>'
    quoted = p(secret).replace("«", "%C2%AB").replace("»", "%C2%BB")
    assert shapes.text(f"/verify/{secret}?next=1", quoted=True) == f"/verify/{quoted}?next=1"
    body = b"\xff\xfe latin-1 \xe9 " + secret.encode() + b" \x00 end"
    assert shapes.content(body) == b"\xff\xfe latin-1 \xe9 " + p(secret).encode() + b" \x00 end"


@pytest.mark.parametrize("text", [
    # Not JWTs: a source map's base64 JSON (no dots), two segments, a header without "alg", inside a longer word.
    "sourceMappingURL=data:application/json;base64," + b64url({"version": 3, "sources": ["a.js"]}),
    f"{b64url({'alg': 'HS256'})}.{b64url({'sub': 'x'})}",
    f"{b64url({'typ': 'JWT', 'kid': 'k1'})}.{b64url({'sub': 'x'})}.sig",
    "x" + jwt("ada"),
    # Near-misses of the key shapes: too short, too long, a publishable Stripe key, inside a word.
    "AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPLEX", "XAKIAIOSFODNN7EXAMPLE", "akiaiosfodnn7example",
    "pk_live_" + "0" * 24, "sk_live_short", "my_sk_live_" + "0" * 24,
    "ghp_short", "xoxb-short", "the right high ghost",
    # URLs that hold no password: a user alone, a port, an '@' further on.
    "https://ada@db.example/x", "http://db.example:8080/a@b", "mailto:ada@example.com", "https://example.com/@ada:1@",
])
def test_near_misses_are_left_alone(shapes: PatternRedactor, text: str) -> None:
    assert shapes.text(text) is text
    content = text.encode()
    assert shapes.content(content) is content


def test_a_password_in_a_url_is_redacted_and_its_user_kept(shapes: PatternRedactor) -> None:
    assert shapes.text("see https://ada:s3cr%21t@db.example/x") == f"see https://ada:{p('s3cr!t')}@db.example/x"
    quoted = p("s3cr!t").replace("«", "%C2%AB").replace("»", "%C2%BB")
    assert shapes.text("https://ada:s3cr%21t@db.example/", quoted=True) == f"https://ada:{quoted}@db.example/"
    # As some JSON writers escape '/'.
    assert shapes.text('{"dsn": "postgres:\\/\\/app:pw-91@db:5432\\/shop"}') == (
        f'{{"dsn": "postgres:\\/\\/app:{p("pw-91")}@db:5432\\/shop"}}')


def test_equal_values_get_equal_placeholders_and_redacting_twice_changes_nothing(shapes: PatternRedactor) -> None:
    token = jwt("ada")
    once = shapes.text(f"{token} and again {token}, not {jwt('bob')}")
    assert once == f"{p(token)} and again {p(token)}, not {p(jwt('bob'))}"
    assert shapes.text(once) == once


def test_every_shape_has_a_name_for_the_readme() -> None:
    from processes import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    for shape in SHAPES:
        assert shape.name in readme, shape.name
