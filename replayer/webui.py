"""The "Sessions" tab of Locust's web UI, through its own extension points.

Locust's UI shows extra tabs from ``template_args`` (``extended_tabs``, ``extended_tables``,
``extended_csv_files``) and fills them from the ``extended_stats`` of the JSON it polls at
``/stats/requests``; this adds ours there, and ``/sessions`` (JSON) and ``/sessions/csv``
routes for scripts and downloads. The figures are the run log's: per recorded session,
replays started, completed and failed, the first divergence, unsourced values, skipped steps.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from locust.env import Environment

from traffic_replay.summary import SessionRow

KEY = "sessions"
COLUMNS = [("name", "Session"), ("started", "Started"), ("completed", "Completed"), ("failed", "Failed"),
           ("median_s", "Median s"), ("p95_s", "95%ile s"), ("first_divergence", "First divergence"),
           ("unsourced", "Unsourced values"), ("skipped", "Skipped steps")]


def add_sessions_tab(environment: Environment, rows: Callable[[], list[SessionRow]]) -> None:
    """Show ``rows()`` in a "Sessions" tab of the web UI (a no-op for a headless run)."""
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return
    app = web_ui.app
    web_ui.template_args.update(
        extended_tabs=[{"title": "Sessions", "key": KEY}],
        extended_tables=[{"key": KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}],
        extended_csv_files=[{"href": "./sessions/csv", "title": "Download session statistics CSV"}],
    )

    def table() -> list[dict[str, Any]]:
        return [row.model_dump() for row in rows()]

    blueprint = Blueprint("replay_sessions", __name__)

    def sessions() -> Response:
        return jsonify(table())

    def sessions_csv() -> Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([title for _, title in COLUMNS])
        for row in table():
            writer.writerow(["" if row[k] is None else row[k] for k, _ in COLUMNS])
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment;filename=sessions.csv"})

    for rule, view in (("/sessions", sessions), ("/sessions/csv", sessions_csv)):
        # Behind --web-login, as Locust's own pages are.
        blueprint.add_url_rule(rule, view.__name__, web_ui.auth_required_if_enabled(view))
    app.register_blueprint(blueprint)

    @app.after_request
    def with_sessions(response: Response) -> Response:
        # The UI polls this every couple of seconds; its extended tables read "extended_stats".
        if request.path.endswith("/stats/requests") and response.is_json:
            data = response.get_json()
            data["extended_stats"] = [{"key": KEY, "data": [
                {k: ("" if v is None else v) for k, v in row.items()} for row in table()]}]
            response.set_data(json.dumps(data))
        return response
