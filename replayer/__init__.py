"""The replaying side: Locust users (gevent). Never imports mitmproxy.

Keep this package's ``__init__`` free of locust imports: the CLI locates
``replayer/locustfile.py`` through it without starting gevent.
"""
