"""gunicorn's settings for the API, wherever it is started: `gunicorn -c python:api.gunicorn_conf`.

Each worker process serves several requests at once on threads (gthread), not
one at a time: the artifact intake stores the pushes that arrive together in one
transaction (see `api.intake`), which needs them in flight side by side in one
process. `--workers` and `--threads` on the command line override these.
"""

worker_class = "gthread"
#: Requests in flight per worker process; a push waiting for its commit holds one.
threads = 8
