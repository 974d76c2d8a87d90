"""The login page of Locust's web UI (``--web-login``): one operator, a password from the environment.

Locust's ``--web-login`` only puts its pages behind Flask-Login and shows a login form;
what the form posts to, and who may pass, is the locustfile's to say (Locust's
``examples/web_ui_auth``). Here: the user ``--web-user`` with the password in
``REPLAY_WEB_PASSWORD``, never a flag (flags show in ``ps``) and never a setting (settings
travel to the workers). The Flask session key is new in each process: a restart logs
everyone out.
"""

from __future__ import annotations

import hmac
import os
import secrets

from flask import Blueprint, redirect, request, session, url_for
from flask_login import UserMixin, login_user
from locust.env import Environment
from werkzeug.wrappers import Response

from traffic_replay.errors import ConfigError, exit_with
from traffic_replay.settings import web_password


class Operator(UserMixin):  # type: ignore[misc]
    """The one user the web UI knows."""

    def __init__(self, name: str) -> None:
        self.id = name


def add_login(environment: Environment, user: str) -> None:
    """With ``--web-login``, only ``user`` with the password of ``REPLAY_WEB_PASSWORD`` gets past the login page."""
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None or not web_ui.web_login:
        return
    try:
        password = web_password(os.environ)
    except ConfigError as e:  # plain `locust --web-login`: `replay run` checked it before it started Locust
        exit_with(e)
    app = web_ui.app
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    web_ui.login_manager.user_loader(lambda name: Operator(name) if name == user else None)
    base = environment.parsed_options.web_base_path if environment.parsed_options else ""
    web_ui.auth_args = {"username_password_callback": f"{base}/login_submit"}
    blueprint = Blueprint("replay_login", __name__, url_prefix=base)

    @blueprint.route("/login_submit", methods=["POST"])
    def login_submit() -> Response:
        given_user = request.form.get("username", "").encode()
        given_password = request.form.get("password", "").encode()
        # Both compared in full, in constant time: neither the user's name nor the password leaks by timing.
        user_ok = hmac.compare_digest(given_user, user.encode())
        if hmac.compare_digest(given_password, password.encode()) and user_ok:
            login_user(Operator(user))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))

    app.register_blueprint(blueprint)
