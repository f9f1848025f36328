"""gunicorn's settings for the API, wherever it is started: `gunicorn -c api/gunicorn_conf.py`.

Each worker process serves many requests at once on gevent's greenlets, not one
at a time: the artifact intake stores the pushes that arrive together in one
transaction (see `api.intake`), which needs them in flight side by side in one
process. Greenlets rather than gunicorn's threads (gthread): a request that
waits (for its batch's commit, for Redis) hands over to the next without a
thread switch under the GIL, and without the poller thread gthread passes every
keep-alive request through; a push costs about a quarter less CPU. gevent
patches the standard library in each worker before the app is imported, so the
intake's writer thread is a greenlet, and psycopg (3.1.14+) waits cooperatively.
`--workers` and `--worker-class` on the command line override these. The file is
given by path (see `gimletd.cli.gunicorn_command`): as `python:api.gunicorn_conf` it
would import the `api` package in gunicorn's master, before gevent patches anything.
"""

from typing import Any

from gunicorn.glogging import Logger

from gimletd.logs import JsonFormatter  # the standard library only: safe in the master

worker_class = "gevent"
#: Connections one worker process serves at once.
worker_connections = 256


class JsonLogger(Logger):
    """gunicorn's own lines (its error log, and the access log when one is asked for) as JSON.

    The same one object per line as GimletD's logs, so a log shipper needs one
    rule for the whole API. Access lines keep gunicorn's text as their `message`.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


logger_class = JsonLogger
