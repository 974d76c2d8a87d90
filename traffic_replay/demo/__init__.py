"""The bundled demo target: a Flask app on gevent's WSGI server, always in a process of its own.

It is the one part of the core allowed to import gevent: ``python -m traffic_replay.demo``
serves it, and nothing else in the core imports it.
"""
