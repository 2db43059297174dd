"""The FastAPI application: routes, validation, responses.

    POST /api/tts        text (+ a voice prompt) -> speech
    POST /api/dialogue   a `NAME: text` script (+ one voice per speaker) -> speech
    POST /api/resynth    a recording (+ a voice prompt) -> its words in that voice
    GET  /api/health     queue depth, model facts       GET /api/voices   bundled voices
    GET  /               the web page                   GET /docs         the OpenAPI docs

Generation requests are multipart forms (text fields and audio files); they answer a WAV, or
with `?format=json` a GenerationResult (audio, spectrogram, codes and the decoding trace).
Validation that needs no model happens here and answers at once: 422 for what the schema says
(required fields, ranges, lengths, the steps list), 400 for the rest (audio that does not
decode, words the phonemizer cannot say, an unknown voice), 413 for size; the rest (a silent or too short voice prompt)
answers 400 from the worker. A full queue answers 503 with Retry-After.

No `from __future__ import annotations` here: FastAPI reads the route signatures' annotations
at run time, and the aliases below are local to create_app.
"""

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from soundstorm import __version__
from soundstorm.data.sentences import split_sentences
from soundstorm.plots import spectrogram_png
from soundstorm.serve.config import ServerConfig
from soundstorm.serve.queue import GenerationQueue, QueueFull, Result
from soundstorm.serve.schemas import (
    DecodingPass,
    ErrorResponse,
    GenerationResult,
    Health,
    Voices,
)
from soundstorm.serve.uploads import decode_audio, wav_bytes
from soundstorm.text.pipeline import (
    DecodingOptions,
    Plan,
    SpeechPipeline,
    Voice,
    parse_dialogue,
)
from soundstorm.text.voice_folder import VOICE_FILE

PAGE = Path(__file__).parent / "static" / "index.html"
MAX_STEPS_PER_LEVEL = 64
MAX_T2S_CANDIDATES = 16  # one request may not ask the server for an unbounded batch
COUNT = r"0*([1-9]|[1-5][0-9]|6[0-4])"  # 1 to MAX_STEPS_PER_LEVEL
T2S_EOS_THRESHOLD = DecodingOptions.t2s_eos_threshold or 0.0  # the form's 0 is the options' None


def steps_pattern(levels: int) -> str:
    """A comma-separated list of 1 to `levels` counts in [1, 64] (fewer than `levels`: only the
    first levels are decoded), as a regular expression: the schema then says all a client needs
    to know."""
    return rf"^\s*{COUNT}(\s*,\s*{COUNT}){{0,{levels - 1}}}\s*$"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "invalid input: the detail says what was expected"},
    413: {"model": ErrorResponse, "description": "an upload or the request is over the size limit"},
    503: {"model": ErrorResponse, "description": "the queue is full: retry after Retry-After seconds"},
    504: {"model": ErrorResponse, "description": "the request waited longer than the server's timeout"},
}
GENERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": GenerationResult, "description": "audio/wav by default; with format=json, a GenerationResult",
          "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
    501: {"model": ErrorResponse, "description": "this server's models cannot do it (no text-to-semantic model)"},
    **ERRORS,
}


@dataclass(frozen=True)
class VoiceSpec:
    """A voice prompt as the request gave it: uploaded samples, or a bundled voice's name."""

    name: str
    samples: np.ndarray | None = None  # float32 [N]
    sample_rate: int | None = None


class VoiceBook:
    """Voice prompts as tokens, made on the worker thread; bundled ones encoded once. The bundled
    voices are the models folder's voices/NAME.wav and its enrolled voice folders voices/NAME/
    (`soundstorm enroll`: a prompt, and a decoder and SoundStorm adapted to the voice)."""

    def __init__(self, pipeline: SpeechPipeline) -> None:
        self.pipeline = pipeline
        folder = pipeline.voices_dir
        self._paths: dict[str, Path] = {}
        if folder is not None:
            self._paths = {p.stem: p for p in folder.glob("*.wav")}
            self._paths.update({p.name: p for p in folder.iterdir() if (p / VOICE_FILE).is_file()})
        self.names = sorted(self._paths)
        self._bundled: dict[str, Voice] = {}

    @property
    def default(self) -> str | None:
        return "default" if "default" in self.names else (self.names[0] if self.names else None)

    def get(self, spec: VoiceSpec) -> Voice:
        if spec.samples is not None:
            return self.pipeline.voice(spec.samples, name=spec.name, sample_rate=spec.sample_rate)
        if spec.name not in self._bundled:
            self._bundled[spec.name] = self.pipeline.voice(self._paths[spec.name], name=spec.name)
        return self._bundled[spec.name]


def create_app(pipeline: SpeechPipeline, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    generation = GenerationQueue(pipeline, config.max_pending, config.max_batch, config.batch_wait_ms / 1000)
    voices = VoiceBook(pipeline)
    Q, K = pipeline.soundstorm.config.num_quantizers, pipeline.soundstorm.config.codebook_size
    guidance = pipeline.default_guidance_scale
    default_levels = len(pipeline.default_steps)  # decoded by default: Q, or a prefix (decoding.json)
    default_guidance = [guidance] * default_levels if isinstance(guidance, float) else list(guidance)  # one per level

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        generation.start()
        yield
        await run_in_threadpool(generation.close)

    app = FastAPI(title="SoundStorm", version=__version__, lifespan=lifespan, max_body_size=config.max_body_bytes,
                  description="Parallel speech generation: text, dialogue or a recording to speech in the voice of "
                              "a 3 s prompt. Generation routes take multipart forms and answer audio/wav, or "
                              "JSON with `format=json`.")
    app.state.generation = generation
    page = PAGE.read_text(encoding="utf-8")
    steps_message = (f"steps must list 1 to {Q} iteration counts (one per level decoded, coarse first) in "
                     f"[1, {MAX_STEPS_PER_LEVEL}], "
                     f"e.g. {','.join(map(str, pipeline.default_steps))}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 body, with a sentence instead of a regular expression for `steps`."""
        errors = [{**e, "msg": f"{steps_message}; got {e.get('input')!r}"}
                  if e.get("type") == "string_pattern_mismatch" and e.get("loc", [None])[-1] == "steps" else e
                  for e in error.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    # ---------------------------------------------------------------- shared validation

    def options_form(
        steps: Annotated[str | None, Form(description=f"SoundStorm iterations per level, comma separated, 1 to "
                                                      f"{Q} numbers in [1, {MAX_STEPS_PER_LEVEL}]; fewer than {Q} "
                                                      f"decode only the first levels (default "
                                                      f"{','.join(map(str, pipeline.default_steps))})",
                                          pattern=steps_pattern(Q), max_length=8 * Q)] = None,
        temperature: Annotated[float, Form(ge=0, le=5, description="SoundStorm sampling temperature")] = 1.0,
        t2s_temperature: Annotated[float, Form(ge=0, le=5, description="text-to-semantic temperature")
                                   ] = DecodingOptions.t2s_temperature,
        t2s_top_k: Annotated[int, Form(ge=1, le=65536, description="text-to-semantic top-k")] = 50,
        t2s_eos_threshold: Annotated[float, Form(ge=0, le=1, description="stop the text-to-semantic model once "
                                                 "p(EOS) reaches this; 0: only when EOS is drawn")] = T2S_EOS_THRESHOLD,
        t2s_candidates: Annotated[int, Form(ge=1, le=MAX_T2S_CANDIDATES, description="text-to-semantic samples "
                                            "drawn; the one that spells the text's phones best is spoken")
                                  ] = DecodingOptions.t2s_candidates,
        guidance_scale: Annotated[float | None, Form(ge=0, le=10, description="classifier-free guidance on every "
                                                     "level, 1 = off (default: the models folder's, "
                                                     "/api/health default_guidance_scale)")] = None,
        soft_temperature: Annotated[float | None, Form(ge=0, le=10, description="levels 2.. decoded as the expected "
                                                       "codebook vector at this temperature, 0 = the tokens "
                                                       "(default: /api/health default_soft_temperature)")] = None,
        spectrum_match: Annotated[float | None, Form(ge=0, le=1, description="filter the speech towards its voice "
                                                     "prompt's long-term spectrum by this share of their difference, "
                                                     "0 = off (default: /api/health default_spectrum_match)")] = None,
        seed: Annotated[int, Form(ge=0, le=2**31 - 1, description="the same seed gives the same audio")] = 0,
    ) -> DecodingOptions:
        levels = [int(n) for n in re.split(r"\s*,\s*", steps.strip())] if steps is not None else None  # the pattern held
        return DecodingOptions(steps=levels, temperature=temperature, t2s_temperature=t2s_temperature,
                               t2s_top_k=t2s_top_k, t2s_eos_threshold=t2s_eos_threshold or None,
                               t2s_candidates=t2s_candidates, guidance_scale=guidance_scale,
                               soft_temperature=soft_temperature, spectrum_match=spectrum_match, seed=seed)

    async def read_audio(upload: UploadFile, what: str) -> tuple[np.ndarray, int]:
        data = await upload.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(413, f"the {what} is over the limit of {config.max_upload_bytes} bytes")
        try:
            return await run_in_threadpool(decode_audio, data, what)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    def bundled(name: str) -> VoiceSpec:
        if name not in voices.names:
            known = ", ".join(voices.names) or "none"
            raise HTTPException(400, f"no bundled voice named {name!r}; bundled voices: {known}")
        return VoiceSpec(name)

    async def voice_spec(upload: UploadFile | None, name: str | None, what: str = "voice prompt") -> VoiceSpec:
        if upload is not None and name:
            raise HTTPException(400, "give an uploaded voice prompt or a bundled voice_name, not both")
        if upload is not None:
            samples, rate = await read_audio(upload, what)
            return VoiceSpec(upload.filename or "upload", samples, rate)
        if name:
            return bundled(name)
        if voices.default is None:
            raise HTTPException(400, "this server has no bundled voices: upload a voice prompt")
        return VoiceSpec(voices.default)

    def needs_text_model() -> None:
        if pipeline.t2s is None:
            raise HTTPException(501, "these models have no text-to-semantic model (t2s/): only /api/resynth works")

    def check_words(text: str) -> None:
        """Every sentence must have words the phonemizer can say (else 400 now, not in the queue)."""
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("the text has no sentences: nothing to say")
        for sentence in sentences:
            pipeline.symbols.encode(sentence)

    async def checked_words(text: str) -> None:
        try:
            await run_in_threadpool(check_words, text)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    async def generate(prepare: Callable[[], Plan], response_format: str) -> Response:
        try:
            future = generation.submit(prepare)
        except QueueFull as error:
            raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), config.request_timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"the request waited over {config.request_timeout_s:g} s") from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return await run_in_threadpool(respond, result, response_format)

    def respond(result: Result, response_format: str) -> Response:
        rate = pipeline.sample_rate
        audio_seconds = len(result.wav) / rate
        audio = wav_bytes(result.wav, rate)
        if response_format == "wav":
            return Response(audio, media_type="audio/wav", headers={
                "X-Audio-Seconds": f"{audio_seconds:.3f}", "X-Generation-Seconds": f"{result.generation_seconds:.3f}",
                "X-Queue-Seconds": f"{result.queue_seconds:.3f}", "X-Batch-Size": str(result.batch_size)})
        trace = result.trace
        assert trace.codes is not None
        body = GenerationResult(
            sample_rate=rate, audio_seconds=audio_seconds, generation_seconds=result.generation_seconds,
            queue_seconds=result.queue_seconds, real_time_factor=result.generation_seconds / max(audio_seconds, 1e-9),
            batch_size=result.batch_size, wav_base64=base64.b64encode(audio).decode(),
            spectrogram_png_base64=base64.b64encode(spectrogram_png(result.wav, rate)).decode(),
            num_quantizers=trace.codes.shape[1], codebook_size=K, codes=trace.codes.tolist(),
            reveal=trace.reveal_grid().tolist(),
            passes=[DecodingPass(level=p.level, iteration=p.iteration, seconds=p.seconds) for p in trace.passes],
        )
        return Response(body.model_dump_json(), media_type="application/json")

    Format = Annotated[Literal["wav", "json"], Query(description="wav (default) or json")]
    VoiceUpload = Annotated[UploadFile | None, File(description="a voice prompt (wav, flac, ogg, mp3); its first 3 s are used")]
    VoiceName = Annotated[str | None, Form(max_length=100, description="a bundled voice (GET /api/voices)")]

    # ---------------------------------------------------------------- routes

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        codec = pipeline.codec
        return Health(status="ok", pending=generation.pending, max_pending=config.max_pending, busy=generation.busy,
                      completed=generation.completed, batches=generation.batches, sample_rate=codec.sample_rate,
                      frame_rate=codec.frame_rate, num_quantizers=Q, codebook_size=K,
                      text_to_speech=pipeline.t2s is not None, default_steps=pipeline.default_steps,
                      default_guidance_scale=default_guidance,
                      default_soft_temperature=pipeline.default_soft_temperature,
                      default_window_seconds=pipeline.default_window_seconds,
                      default_window_context_seconds=pipeline.default_window_context_seconds,
                      default_spectrum_match=pipeline.default_spectrum_match)

    @app.get("/api/voices", response_model=Voices)
    async def list_voices() -> Voices:
        return Voices(voices=voices.names, default=voices.default)

    @app.post("/api/tts", response_model=None, responses=GENERATION_RESPONSES, summary="Text to speech")
    async def tts(
        options: Annotated[DecodingOptions, Depends(options_form)],
        text: Annotated[str, Form(min_length=1, max_length=config.max_text_chars, description="the text to speak")],
        voice: VoiceUpload = None,
        voice_name: VoiceName = None,
        format: Format = "wav",
    ) -> Response:
        needs_text_model()
        spec = await voice_spec(voice, voice_name)
        await checked_words(text)
        return await generate(lambda: pipeline.plan_tts(text, voices.get(spec), options), format)

    @app.post("/api/dialogue", response_model=None, responses=GENERATION_RESPONSES, summary="A multi-speaker dialogue",
              description="Speakers take voices in the order they first speak: the uploaded `voices` first, then "
                          "the comma-separated bundled `voice_names`, then bundled voices in turn (default first).")
    async def dialogue(
        options: Annotated[DecodingOptions, Depends(options_form)],
        script: Annotated[str, Form(min_length=1, max_length=config.max_text_chars,
                                    description="one turn a line, `NAME: text`")],
        voices_: Annotated[list[UploadFile] | None, File(alias="voices", description="voice prompts, one per speaker")] = None,
        voice_names: Annotated[str | None, Form(max_length=1000, description="bundled voices, comma separated")] = None,
        format: Format = "wav",
    ) -> Response:
        needs_text_model()
        try:
            turns = parse_dialogue(script)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        if len(turns) > config.max_turns:
            raise HTTPException(400, f"the script has {len(turns)} turns; at most {config.max_turns} are allowed")
        speakers = list(dict.fromkeys(speaker for speaker, _ in turns))
        specs: list[VoiceSpec] = [VoiceSpec(f"voice {i + 1}", *await read_audio(upload, f"voice prompt {i + 1}"))
                                  for i, upload in enumerate(voices_ or [])]
        specs += [bundled(name.strip()) for name in (voice_names or "").split(",") if name.strip()]
        rotation = ([voices.default] if voices.default else []) + [n for n in voices.names if n != voices.default]
        if len(specs) < len(speakers) and not rotation:
            raise HTTPException(400, f"{len(speakers)} speakers and {len(specs)} voices, and no bundled voices")
        while len(specs) < len(speakers):
            specs.append(VoiceSpec(rotation[(len(specs)) % len(rotation)]))
        for _, text in turns:
            await checked_words(text)
        assigned = dict(zip(speakers, specs))
        return await generate(
            lambda: pipeline.plan_dialogue(turns, {s: voices.get(spec) for s, spec in assigned.items()}, options), format)

    @app.post("/api/resynth", response_model=None, responses=GENERATION_RESPONSES, summary="Voice conversion",
              description="The words of `source` (its semantic tokens) spoken in the voice of the prompt.")
    async def resynth(
        options: Annotated[DecodingOptions, Depends(options_form)],
        source: Annotated[UploadFile, File(description="the recording whose words to keep")],
        voice: VoiceUpload = None,
        voice_name: VoiceName = None,
        format: Format = "wav",
    ) -> Response:
        samples, rate = await read_audio(source, "source recording")
        seconds = len(samples) / rate
        if seconds > config.max_source_seconds:
            raise HTTPException(400, f"the source recording lasts {seconds:.1f} s; at most "
                                     f"{config.max_source_seconds:g} s is allowed")
        spec = await voice_spec(voice, voice_name)
        return await generate(lambda: pipeline.plan_resynth(samples, voices.get(spec), options, sample_rate=rate), format)

    return app
