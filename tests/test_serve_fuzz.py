"""Fuzzing the API's request validation with schemathesis against its own OpenAPI schema, on a
running server with tiny random models: no generated request may get a 5xx, and every response
must match the schema (status code, content type, body)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from soundstorm.serve.app import create_app
from soundstorm.serve.config import ServerConfig
from soundstorm.text.pipeline import SpeechPipeline
from tests.live_server import LiveServer
from tests.speech_models import needs_flite, write_tiny_models

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = needs_flite


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    models = write_tiny_models(tmp_path_factory.mktemp("models"))
    config = ServerConfig(max_text_chars=200, max_turns=4, max_pending=64)  # short texts: the fuzzing stays quick
    with LiveServer(create_app(SpeechPipeline.from_folder(models), config)) as server:
        yield server.url


@pytest.fixture(scope="module")
def api_schema(live_url: str):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_request_the_schema_allows_gets_a_documented_answer(case) -> None:  # type: ignore[no-untyped-def]
    # All default checks but one: a schema cannot say which words the phonemizer knows or which
    # bytes are audio, so a schema-valid request may rightly get a (documented) 400.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
