"""What a correlation is: a recorded value, where it is read live (sources), where it is sent (uses)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple
from urllib.parse import quote, quote_plus

ExtractKind = Literal["json", "header", "html_input", "html_meta", "cookie", "regex"]
Encoding = Literal["raw", "quote", "quote_plus", "quote_lenient"]

ENCODERS: dict[Encoding, Callable[[str], str]] = {
    "raw": str, "quote_plus": quote_plus, "quote": lambda v: quote(v, safe=""),
    # Clients differ in what they leave unescaped; ':' and '/' are legal in queries and forms.
    "quote_lenient": lambda v: quote(v, safe=":/@"),
}


class Source(NamedTuple):
    """Where a value can be read from the response of request ``step`` (0-based).

    A tuple: the detector makes one for every value of every answer and hashes it.
    """

    step: int
    kind: ExtractKind
    key: str  # JSON path ("auth.access_token", "items.3.id"), header/cookie/input/meta name, or regex
    prefix: str = ""  # header values: text around the value, so that "/listings/1001" yields "1001"
    suffix: str = ""

    def describe(self) -> str:
        label = {"json": "JSON", "html_input": "input", "html_meta": "meta"}.get(self.kind, self.kind)
        return f"{label} {self.key}"


@dataclass(frozen=True, slots=True)
class Use:
    """Where request ``step`` sends the value: its path, a header, or its body."""

    step: int
    place: Literal["path", "header", "body"]
    name: str = ""  # header name
    encoding: Encoding = "raw"
    recorded: str | None = None  # the text replaced there, when not the correlation's value (rules' inject)
    # Exactly where, when the detector knows: the characters of the value in the recorded path or
    # body (for a JSON body, within the string at ``json_path``; None there is the whole leaf).
    # Without it, every whole-token occurrence of the value in the place is replaced.
    span: tuple[int, int] | None = None
    json_path: str | None = None

    def describe(self) -> str:
        where = f"{self.place} {self.name}" if self.name else self.place
        return f"{where} JSON {self.json_path}" if self.json_path is not None else where


@dataclass(slots=True)
class Correlation:
    """One recorded value, its sources and its uses."""

    value: str
    sources: list[Source] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)
    rule: str | None = None  # name of the rules-file rule that declared it
