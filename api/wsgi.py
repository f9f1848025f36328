"""The WSGI entry point for gunicorn.

Run it with its settings, `gunicorn -c api/gunicorn_conf.py api.wsgi:app`, as
`gimletd api` does (see `gimletd.cli.gunicorn_command`): without them gunicorn
serves one request at a time per process, and pushes are never stored together.
"""

from api import create_app

app = create_app()
