"""LabTrack: batch tracking for autologous stem-cell products, harvest to injection.

Importing the package imports nothing else, so that plain-Python parts (the domain, the
offline verifier ``python -m labtrack.audit.verify``) run without Flask or SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from config import Config


def create_app(config: Config | None = None) -> Flask:
    """The Flask app with everything bound (``labtrack.app.create_app``)."""
    from labtrack.app import create_app as build

    return build(config)
