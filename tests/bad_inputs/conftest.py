"""The session's store of earlier runs' outputs (`harness.artifact`)."""

import pytest

from tests.bad_inputs import harness


@pytest.fixture(scope="session", autouse=True)
def _artifacts(tmp_path_factory):
    harness.ARTIFACTS["root"] = tmp_path_factory.mktemp("artifacts")
    yield
    harness._BUILT.clear()
