"""LabTrack's rules as plain Python: no Flask, no SQLAlchemy.

Every rule of docs/requirements.md with an ID (R-...) lives in one of these modules, so it can
be read, reviewed and tested without a database or a web server.
"""
