"""Correlation: values a server handed out that later requests sent back, carried over live.

One concept in a few modules: ``model`` (what a correlation is), ``places`` (where values
stand in requests and responses), ``detection`` (finding them in a recording, with ``sends``:
what a request sends, and ``evidence``: whether an offer and a use prove a value the server's), ``rules``
(declaring them by hand), ``extraction`` (reading a value out of a response), ``template``
(putting live values into a request). Pure Python: no mitmproxy, no locust.
"""

from traffic_replay.correlation.detection import (
    Analysis,
    Rejected,
    Unsourced,
    analyse,
    detect,
    forget_recording,
    json_leaves,
    request_texts,
    unsourced_values,
    uses_in,
)
from traffic_replay.correlation.extraction import Extractor, ResponseView, compile_extractor, recorded_view
from traffic_replay.correlation.model import ENCODERS, Correlation, Encoding, ExtractKind, Source, Use
from traffic_replay.correlation.rules import Rule, apply_rules, load_rules
from traffic_replay.correlation.template import Template, build_template, find_token

__all__ = [
    "ENCODERS", "Analysis", "Correlation", "Encoding", "ExtractKind", "Extractor", "Rejected", "ResponseView",
    "Rule", "Source", "Template", "Unsourced", "Use", "analyse", "apply_rules", "build_template",
    "compile_extractor", "detect", "find_token", "forget_recording", "json_leaves", "load_rules", "recorded_view",
    "request_texts", "unsourced_values", "uses_in",
]
