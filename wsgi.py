"""WSGI entry point: ``gunicorn wsgi:app``."""

import gc

from labtrack import create_app

app = create_app()
# What start-up built (modules, the app, mappers, schemas) lives as long as the worker: freezing it
# keeps the collector's full passes from walking it again and again, which showed as p99 pauses.
gc.freeze()
