"""JSON shapes of the API's responses (pydantic models: they make the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, and what was expected")


class DecodingPass(BaseModel):
    level: int = Field(description="RVQ level decoded by this forward pass, 0-based")
    iteration: int = Field(description="iteration within the level, 0-based")
    seconds: float = Field(description="time since its batch's decoding began")


class GenerationResult(BaseModel):
    """A generated clip with how it was made; `format=json` on any generation route."""

    sample_rate: int
    audio_seconds: float
    generation_seconds: float = Field(description="wall time of the batch it was decoded in")
    queue_seconds: float = Field(description="time waiting for the worker")
    real_time_factor: float = Field(description="generation_seconds / audio_seconds")
    batch_size: int = Field(description="requests decoded together")
    wav_base64: str = Field(description="16-bit PCM WAV, base64")
    spectrogram_png_base64: str = Field(description="log-magnitude spectrogram, PNG, base64")
    num_quantizers: int = Field(description="levels decoded: the model's all, or the first ones where the steps "
                                            "listed fewer")
    codebook_size: int
    codes: list[list[int]] = Field(description="the generated codec tokens [frames][levels]")
    reveal: list[list[int]] = Field(
        description="[frames][levels]: the 1-based index into `passes` of the forward pass that fixed each token")
    passes: list[DecodingPass]


class Health(BaseModel):
    status: str
    pending: int = Field(description="requests waiting for the worker")
    max_pending: int
    busy: bool = Field(description="the worker is generating")
    completed: int
    batches: int
    sample_rate: int
    frame_rate: float
    num_quantizers: int
    codebook_size: int
    text_to_speech: bool = Field(description="a text-to-semantic model is loaded (tts and dialogue work)")
    default_steps: list[int]
    default_guidance_scale: list[float]  # per level, used when a request gives no guidance_scale
    default_soft_temperature: float = Field(description="soft decoding of levels 2.. when a request gives none; "
                                            "0: the tokens themselves")
    default_window_seconds: float = Field(description="long-form decoding: a segment of more new audio than this is "
                                          "decoded window by window, each continuing the one before; 0: one pass")
    default_window_context_seconds: float = Field(description="what each window after the first sees of the one "
                                                  "before, after the voice prompt")
    default_spectrum_match: float = Field(description="the share of the difference between the speech's long-term "
                                                      "spectrum and its voice prompt's that a post-filter removes "
                                                      "(0 = off)")


class Voices(BaseModel):
    voices: list[str] = Field(description="bundled voices, by name: prompts voices/NAME.wav and enrolled voice folders voices/NAME/")
    default: str | None
