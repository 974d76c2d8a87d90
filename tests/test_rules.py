"""The correlation rules file: loading, errors, and what a rule adds to detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from replayer.prepared import prepare_session
from traffic_replay.correlation import apply_rules, detect, load_rules
from traffic_replay.errors import ConfigError

from factories import answered, make_request, make_session

pytestmark = pytest.mark.timeout(10)

RULES = '''
[[rule]]
name = "order number"
regex = "Order no\\\\. (\\\\w+)"
from_path = "^/checkout"

[[rule]]
name = "session header"
header = "X-Session"
inject = ["header:X-Session", "query:sess"]
'''


def test_rules_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    rules = load_rules(path)
    assert [(r.name, r.kind) for r in rules] == [("order number", "regex"), ("session header", "header")]
    assert rules[1].inject == ["header:X-Session", "query:sess"]


@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nname = "x"\n', "exactly one of"),
    ('[[rule]]\nname = "x"\njson = "a"\nheader = "b"\n', "exactly one of"),
    ('[[rule]]\nname = "x"\nregex = "("\n', "not a valid regular expression"),
    ('[[rule]]\nname = "x"\njson = "a"\ninject = ["body:z"]\n', "inject"),
    ("[[rule]\n", "not valid TOML"),
])
def test_bad_rules_name_the_file_and_the_fault(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_rules(path)
    assert str(info.value).startswith(str(path))


def test_a_regex_rule_finds_what_the_detector_cannot(tmp_path: Path) -> None:
    # "abcdef" has no digit and is short: the detector leaves it alone; the rule does not.
    session = make_session([
        answered(make_request("/checkout", "POST"), "<p>Order no. abcdef placed</p>", "text/html"),
        make_request("/orders/abcdef"),
    ])
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    assert detect(session) == []
    [order] = apply_rules(session, load_rules(path), [])
    assert order.rule == "order number" and [(u.step, u.place) for u in order.uses] == [(1, "path")]
    step = prepare_session(session, 1.0, rules=load_rules(path)).steps[1]
    assert step.patch is not None and step.patch.path is not None
    assert step.patch.path.render(["zyx987"]) == "/orders/zyx987"


def test_inject_replaces_what_the_recording_had_there_even_when_it_differs(tmp_path: Path) -> None:
    session = make_session([
        answered(make_request("/start"), "", headers=[("X-Session", "s-111111")]),
        make_request("/next?sess=old-value-1", headers=[("X-Session", "«redacted:0a1b2c3d»")]),
    ])
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    prepared = prepare_session(session, 1.0, rules=load_rules(path), environ={})
    patch = prepared.steps[1].patch
    assert patch is not None and patch.path is not None
    live = ["s-999999"] + list(prepared.initial[1:])
    assert patch.path.render(live) == "/next?sess=s-999999"
    assert dict((n, t.render(live)) for n, t in patch.headers)["X-Session"] == "s-999999"
    assert prepared.missing is None, "the rule is the placeholder's live source"
