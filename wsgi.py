"""WSGI entry point: ``gunicorn wsgi:app``."""

from labtrack import create_app

app = create_app()
