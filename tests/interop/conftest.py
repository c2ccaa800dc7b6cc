"""One lab per test module for the interoperability tests: batches built once, read many times."""

from __future__ import annotations

import pytest

from tests.conftest import fresh_database, make_app
from tests.helpers import Lab


@pytest.fixture(scope="module")
def shared_lab(_template: str, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("interop")
    app = make_app(fresh_database(_template, directory), directory)
    lab = Lab.build(app, app.test_client())
    yield lab
    lab.db.dispose()
