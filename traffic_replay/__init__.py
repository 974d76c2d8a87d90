"""traffic-replay's shared core: the session format, settings, errors and the CLI.

Imports neither mitmproxy nor locust (nor gevent): the recorder and the replayer run
in processes of their own, and both import from here.
"""

__version__ = "0.1.0"
