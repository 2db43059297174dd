"""The HTTP API through a real HTTP client (httpx) against a running uvicorn server, on tiny
random models: every route, every kind of bad request, the bounded queue (503), batching that
changes nothing in a request's audio, and one bad request among good ones."""

from __future__ import annotations

import base64
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from soundstorm.serve.app import create_app
from soundstorm.serve.config import ServerConfig
from soundstorm.text.pipeline import SpeechPipeline
from tests.live_server import Gate, LiveServer
from tests.speech_models import needs_flite, write_tiny_models

pytestmark = needs_flite


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def served(models: Path) -> Iterator[tuple[str, Gate]]:
    pipeline = SpeechPipeline.from_folder(models)
    gate = Gate(pipeline)
    config = ServerConfig(max_text_chars=300, max_turns=4, max_upload_bytes=400_000, max_body_bytes=1_000_000,
                          max_source_seconds=5.0, max_pending=3, max_batch=8, batch_wait_ms=50)
    with LiveServer(create_app(pipeline, config)) as server:
        yield server.url, gate


@pytest.fixture
def client(served: tuple[str, Gate]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as client:
        yield client


def wav_file(wav: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wav, rate, format="WAV")
    return buffer.getvalue()


def audio_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    wav, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 16000 and len(wav) > 0
    return wav


def test_health_voices_schema_and_page(client: httpx.Client) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["num_quantizers"] == 4 and health["default_steps"] == [16, 1, 1, 1]
    assert client.get("/api/voices").json() == {"voices": ["awb", "default"], "default": "default"}
    schema = client.get("/openapi.json").json()
    assert {"/api/tts", "/api/dialogue", "/api/resynth", "/api/health"} <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="grid"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from outside


def test_tts_dialogue_and_resynth(client: httpx.Client, models: Path) -> None:
    wav = audio_of(client.post("/api/tts", data={"text": "Hello there. How are you?", "steps": "2,1,1,1"}))
    assert len(wav) % 320 == 0  # whole codec frames
    uploaded = (models / "voices" / "awb.wav").read_bytes()
    audio_of(client.post("/api/tts", data={"text": "Hello."}, files={"voice": ("awb.wav", uploaded, "audio/wav")}))
    audio_of(client.post("/api/tts", data={"text": "Hello.", "voice_name": "awb"}))

    dialogue = client.post("/api/dialogue", data={"script": "A: Good morning.\nB: Good morning to you.",
                                                  "voice_names": "default,awb"})
    assert len(audio_of(dialogue)) >= 0.25 * 16000  # two turns and a pause
    two_uploads = [("voices", ("a.wav", uploaded, "audio/wav")), ("voices", ("b.wav", uploaded, "audio/wav"))]
    audio_of(client.post("/api/dialogue", data={"script": "A: Hi.\nB: Hello."}, files=two_uploads))

    source = models / "voices" / "default.wav"
    resynth = audio_of(client.post("/api/resynth", data={"voice_name": "awb"}, files={"source": source.read_bytes()}))
    assert abs(len(resynth) / 16000 - sf.info(source).duration) < 0.1  # the words keep their timing
    # The post-filter towards the voice prompt's spectrum: the same length, other audio.
    matched = audio_of(client.post("/api/resynth", data={"voice_name": "awb", "spectrum_match": "1"},
                                   files={"source": source.read_bytes()}))
    assert matched.shape == resynth.shape and not np.allclose(matched, resynth, atol=1e-3)


def test_json_format_carries_audio_spectrogram_codes_and_the_decoding_trace(client: httpx.Client) -> None:
    response = client.post("/api/tts?format=json", data={"text": "One two three.", "steps": "3,2,1,1", "seed": "7"})
    assert response.status_code == 200, response.text
    body = response.json()
    wav, rate = sf.read(io.BytesIO(base64.b64decode(body["wav_base64"])))
    assert rate == body["sample_rate"] == 16000 and abs(len(wav) / rate - body["audio_seconds"]) < 1e-3
    assert base64.b64decode(body["spectrogram_png_base64"])[:4] == b"\x89PNG"
    codes, reveal, passes = np.array(body["codes"]), np.array(body["reveal"]), body["passes"]
    assert codes.shape == reveal.shape == (len(wav) // 320, 4) and codes.min() >= 0 and codes.max() < 64
    assert [(p["level"], p["iteration"]) for p in passes] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (3, 0)]
    assert reveal.min() >= 1 and reveal.max() <= len(passes)
    for q in range(4):  # every token was fixed by a pass of its own level
        assert {passes[k - 1]["level"] for k in reveal[:, q]} == {q}
    same = client.post("/api/tts", data={"text": "One two three.", "steps": "3,2,1,1", "seed": "7"})
    assert np.allclose(audio_of(same), wav, atol=1 / 32768)  # the seed fixes the audio
    # Steps for the first two levels only: the first two levels of the same decoding, and a
    # grid of two levels for the page.
    prefix = client.post("/api/tts?format=json", data={"text": "One two three.", "steps": "3,2", "seed": "7"}).json()
    assert prefix["num_quantizers"] == 2 and np.array_equal(np.array(prefix["codes"]), codes[:, :2])
    assert np.array_equal(np.array(prefix["reveal"]), reveal[:, :2]) and len(prefix["passes"]) == 5
    # Soft decoding of levels 2..4: the same tokens, other audio.
    health = client.get("/api/health").json()
    assert health["default_soft_temperature"] == 0.0
    assert (health["default_window_seconds"], health["default_window_context_seconds"]) == (6.0, 1.0)
    soft = client.post("/api/tts?format=json", data={"text": "One two three.", "steps": "3,2,1,1", "seed": "7",
                                                     "soft_temperature": "0.5"}).json()
    assert np.array_equal(np.array(soft["codes"]), codes)
    soft_wav, _ = sf.read(io.BytesIO(base64.b64decode(soft["wav_base64"])))
    assert soft_wav.shape == wav.shape and not np.allclose(soft_wav, wav, atol=1e-3)
    assert health["default_spectrum_match"] == 0.0  # no decoding.json here: the post-filter is off


@pytest.mark.parametrize(
    ("route", "data", "files", "status", "message"),
    [
        ("/api/tts", {}, None, 422, "text"),
        ("/api/tts", {"text": "x" * 301}, None, 422, "300"),
        ("/api/tts", {"text": "Hi.", "steps": "1,2,1,1,1"}, None, 422, "steps must list 1 to 4 .*got '1,2,1,1,1'"),
        ("/api/tts", {"text": "Hi.", "steps": "2,,1"}, None, 422, "steps must list 1 to 4"),
        ("/api/tts", {"text": "Hi.", "steps": "99,1,1,1"}, None, 422, "in \\[1, 64\\]"),
        ("/api/tts", {"text": "Hi.", "spectrum_match": "1.5"}, None, 422, "spectrum_match"),
        ("/api/tts", {"text": "Hi.", "temperature": "9"}, None, 422, "less than or equal to 5"),
        ("/api/tts", {"text": "Hi.", "seed": "-1"}, None, 422, "greater than or equal to 0"),
        ("/api/tts", {"text": "Hi.", "voice_name": "nobody"}, None, 400, "no bundled voice named 'nobody'"),
        ("/api/tts", {"text": "Hi.", "voice_name": "awb"}, {"voice": b"RIFF"}, 400, "not both"),
        ("/api/tts", {"text": "Hi."}, {"voice": b"not audio at all"}, 400, "not audio that libsndfile can decode"),
        ("/api/tts", {"text": "Hi."}, {"voice": b""}, 400, "empty"),
        ("/api/tts", {"text": "It costs 50 %."}, None, 400, "spell symbols and numerals out"),
        ("/api/tts", {"text": "?!"}, None, 400, "no words"),
        ("/api/tts", {"text": "Hi."}, {"voice": b"\0" * 400_001}, 413, "over the limit of 400000 bytes"),
        ("/api/dialogue", {"script": "no speaker here"}, None, 400, "NAME: text"),
        ("/api/dialogue", {"script": "\n".join(f"A: Line {n}." for n in "12345")}, None, 400, "at most 4"),
        ("/api/resynth", {}, None, 422, "source"),
        ("/api/resynth", {}, {"source": wav_file(np.full(16000 * 6, 0.1, np.float32))}, 400, "at most 5 s"),
    ],
)
def test_bad_requests_get_clear_4xx(client: httpx.Client, route: str, data: dict, files: dict | None, status: int,
                                    message: str) -> None:
    response = client.post(route, data=data, files=files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert re.search(message, response.text), response.text


def test_a_body_over_the_limit_is_refused_while_it_arrives(client: httpx.Client) -> None:
    response = client.post("/api/resynth", files={"source": b"\0" * 1_200_000})
    assert response.status_code == 413


def test_a_prompt_the_worker_refuses_gets_400_and_the_server_goes_on(client: httpx.Client) -> None:
    silent = wav_file(np.zeros(32000, np.float32))
    response = client.post("/api/tts", data={"text": "Hi."}, files={"voice": ("silent.wav", silent, "audio/wav")})
    assert response.status_code == 400 and "silent" in response.json()["detail"]
    audio_of(client.post("/api/tts", data={"text": "Hi."}))


def post_in_threads(url: str, requests: list[dict]) -> list[httpx.Response | None]:
    responses: list[httpx.Response | None] = [None] * len(requests)

    def send(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            responses[i] = client.post(requests[i].pop("route", "/api/tts"), **requests[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return responses


def test_a_full_queue_answers_503_and_the_waiting_requests_finish(served: tuple[str, Gate], client: httpx.Client) -> None:
    url, gate = served
    gate.close()
    try:
        first = threading.Thread(target=lambda: client.post("/api/tts", data={"text": "First."}))
        first.start()
        assert gate.entered.wait(30)  # the worker holds the first request at the gate
        waiting = [{"data": {"text": f"Request {n}."}} for n in ("one", "two", "three")]
        results: list[httpx.Response | None] = []
        sender = threading.Thread(target=lambda: results.extend(post_in_threads(url, waiting)))
        sender.start()
        for _ in range(300):  # the three fill the queue (max_pending 3)
            if client.get("/api/health").json()["pending"] == 3:
                break
            threading.Event().wait(0.02)
        refused = client.post("/api/tts", data={"text": "One too many."})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "already waiting" in refused.json()["detail"]
    finally:
        gate.open()
    first.join(60)
    sender.join(60)
    assert [r.status_code for r in results if r is not None] == [200, 200, 200]
    assert {r.headers["x-batch-size"] for r in results if r is not None} == {"3"}  # decoded as one batch


def test_batching_changes_no_request_s_audio_and_a_bad_request_fails_alone(served: tuple[str, Gate],
                                                                          client: httpx.Client) -> None:
    url, gate = served
    texts = ["Good morning.", "A somewhat longer sentence than the first."]
    alone = [audio_of(client.post("/api/tts", data={"text": t, "seed": str(i)})) for i, t in enumerate(texts)]
    gate.close()
    try:
        blocker = threading.Thread(target=lambda: client.post("/api/tts", data={"text": "Hold."}))
        blocker.start()
        assert gate.entered.wait(30)
        silent = ("silent.wav", wav_file(np.zeros(32000, np.float32)), "audio/wav")
        requests = [{"data": {"text": t, "seed": str(i)}} for i, t in enumerate(texts)]
        requests.insert(1, {"data": {"text": "Bad prompt."}, "files": {"voice": silent}})
        results: list[httpx.Response | None] = []
        sender = threading.Thread(target=lambda: results.extend(post_in_threads(url, requests)))
        sender.start()
        for _ in range(300):
            if client.get("/api/health").json()["pending"] == 3:
                break
            threading.Event().wait(0.02)
    finally:
        gate.open()
    blocker.join(60)
    sender.join(60)
    good = [results[0], results[2]]
    assert results[1] is not None and results[1].status_code == 400 and "silent" in results[1].text
    assert all(r is not None and int(r.headers["x-batch-size"]) >= 2 for r in good)
    for response, expected in zip(good, alone):
        assert response is not None
        assert np.array_equal(audio_of(response), expected)  # each segment has its own seeded stream


def test_without_a_text_model_only_resynthesis_works(models: Path, tmp_path: Path) -> None:
    root = write_tiny_models(tmp_path / "models", text_model=False)
    with LiveServer(create_app(SpeechPipeline.from_folder(root))) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        refused = client.post("/api/tts", data={"text": "Hello."})
        assert refused.status_code == 501 and "only /api/resynth" in refused.json()["detail"]
        assert client.get("/api/health").json()["text_to_speech"] is False
        audio_of(client.post("/api/resynth", files={"source": (models / "voices" / "awb.wav").read_bytes()}))
