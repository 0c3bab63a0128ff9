"""LLMClient with the real `openai` client against the scripted OpenAI-compatible server."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import pytest_asyncio
import structlog

from bot.core.config import LLMSettings
from bot.llm import (
    LLMClient,
    LLMRequestError,
    LLMStreamInterrupted,
    LLMUnavailableError,
    llm_session,
    open_llm,
    resolve_api_mode,
)
from bot.llm.client import ApiMode, redact_url
from tests.support.scripted_llm import (
    ScriptedDelay,
    ScriptedError,
    ScriptedLLMServer,
    ScriptedMalformed,
    ScriptedReply,
    ScriptedTruncatedStream,
)

SECRET = "sk-test-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
SYSTEM = "You answer questions about papers."
USER = "Question: What is attention?\nAnswer:"

ClientFactory = Callable[..., LLMClient]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    async with ScriptedLLMServer() as scripted:
        yield scripted


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest_asyncio.fixture
async def make_client(server: ScriptedLLMServer, sleeps: list[float]) -> AsyncIterator[ClientFactory]:
    """Clients whose backoff sleeps are recorded instead of slept (network timeouts stay real)."""
    clients: list[LLMClient] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    def factory(mode: ApiMode = "chat", **overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "api_key": SECRET,
            "model": "test-model",
            "api_mode": mode,
            "timeout_s": 5.0,
            "max_retries": 2,
            "temperature": 0.3,
            "backoff_base_s": 0.5,
            "backoff_max_s": 4.0,
            "sleep": record_sleep,
        }
        options.update(overrides)
        client = LLMClient(**options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


# --------------------------------------------------------------------------- happy paths


async def test_generate_chat_sends_system_and_user_messages(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    server.script(ScriptedReply("Attention weighs tokens."))
    client = make_client("chat")

    completion = await client.generate(system=SYSTEM, user=USER, max_tokens=40, stop=["\n\n"])

    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER},
    ]
    assert request.json["model"] == "test-model"
    assert request.json["max_tokens"] == 40
    assert request.json["stop"] == ["\n\n"]
    assert request.json["temperature"] == 0.3
    assert "stream" not in request.json
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert completion.text == "Attention weighs tokens."
    assert completion.finish_reason == "stop"
    assert completion.model == "test-model"
    assert completion.prompt_tokens == server.count_tokens(f"{SYSTEM}\n{USER}")
    assert completion.completion_tokens == server.count_tokens("Attention weighs tokens.")
    assert not completion.usage_estimated
    assert completion.seconds > 0


async def test_generate_completions_sends_one_prompt(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    server.script(ScriptedReply(" It lets each token look at the others.", finish_reason="length"))
    client = make_client("completions")

    completion = await client.generate(system=SYSTEM, user=USER, max_tokens=12)

    [request] = server.requests
    assert request.path == "/v1/completions"
    assert request.json["prompt"] == f"{SYSTEM}\n\n{USER}"
    assert "messages" not in request.json
    assert "stop" not in request.json
    assert completion.text == " It lets each token look at the others."
    assert completion.finish_reason == "length"


EXAMPLE = (("user", "Question: What is a transformer?"), ("assistant", "Answer: A model built on attention."))


@pytest.mark.parametrize("streamed", [False, True], ids=["generate", "stream"])
async def test_earlier_turns_are_messages_in_chat_and_text_in_completions(
    server: ScriptedLLMServer, make_client: ClientFactory, streamed: bool
) -> None:
    """A worked example goes before the request as earlier turns; the reply's start ("Answer:")
    ends a completions prompt and is left to the chat template in chat mode."""
    for mode in ("chat", "completions"):
        server.script(ScriptedReply("Attention weighs tokens."))
        client = make_client(mode)
        options: dict[str, Any] = {"system": SYSTEM, "user": "Question: What is attention?", "max_tokens": 9}
        if streamed:
            completion = await client.stream(**options, turns=EXAMPLE, reply_prefix="Answer:").collect()
        else:
            completion = await client.generate(**options, turns=EXAMPLE, reply_prefix="Answer:")
        assert completion.text == "Attention weighs tokens."
    chat, completions = server.requests
    assert chat.json["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Question: What is a transformer?"},
        {"role": "assistant", "content": "Answer: A model built on attention."},
        {"role": "user", "content": "Question: What is attention?"},
    ]
    assert completions.json["prompt"] == (
        f"{SYSTEM}\n\nQuestion: What is a transformer?\nAnswer: A model built on attention.\n\n"
        "Question: What is attention?\nAnswer:"
    )


async def test_usage_totals_accumulate(server: ScriptedLLMServer, make_client: ClientFactory) -> None:
    server.script(
        ScriptedReply("one", prompt_tokens=11, completion_tokens=3),
        ScriptedReply("two", prompt_tokens=13, completion_tokens=5),
    )
    client = make_client("chat")

    await client.generate(system=SYSTEM, user="a", max_tokens=5)
    await client.generate(system=SYSTEM, user="b", max_tokens=5)

    usage = client.usage.snapshot()
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, 24, 8)
    assert (usage.errors, usage.retries, usage.estimated_calls) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_stream_deltas_concatenate_to_the_text(
    server: ScriptedLLMServer, make_client: ClientFactory, mode: ApiMode
) -> None:
    text = "Self-attention relates every position to every other position."
    server.script(ScriptedReply(text, chunk_chars=5))
    client = make_client(mode)

    stream = client.stream(system=SYSTEM, user=USER, max_tokens=64)
    deltas = [delta async for delta in stream]

    assert len(deltas) == math.ceil(len(text) / 5)
    assert "".join(deltas) == text
    assert stream.completion is not None
    assert stream.completion.text == text
    assert stream.completion.finish_reason == "stop"
    assert stream.completion.completion_tokens == server.count_tokens(text)
    assert not stream.completion.usage_estimated
    [request] = server.requests
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}
    assert client.usage.calls == 1
    assert client.usage.completion_tokens == server.count_tokens(text)


async def test_stream_falls_back_to_estimated_usage_when_stream_options_are_rejected(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    text = "An estimate, counted with tiktoken."
    server.script(
        ScriptedError(400, message="Unrecognized request argument supplied: stream_options"),
        ScriptedReply(text),
        ScriptedReply(text),
    )
    client = make_client("completions")

    first = await client.stream(system=SYSTEM, user=USER, max_tokens=64).collect()
    second = await client.stream(system=SYSTEM, user=USER, max_tokens=64).collect()

    assert first.text == second.text == text
    assert first.usage_estimated and second.usage_estimated
    assert first.completion_tokens == server.count_tokens(text)
    assert first.prompt_tokens == server.count_tokens(f"{SYSTEM}\n\n{USER}")
    assert [("stream_options" in r.json) for r in server.requests] == [True, False, False]
    assert client.usage.estimated_calls == 2
    assert client.usage.errors == 0


# --------------------------------------------------------------------------- retries


async def test_rate_limit_then_success_retries_once_honouring_retry_after(
    server: ScriptedLLMServer, make_client: ClientFactory, sleeps: list[float]
) -> None:
    server.script(ScriptedError(429, headers={"Retry-After": "7"}), ScriptedReply("ok"))
    client = make_client("chat")

    completion = await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert completion.text == "ok"
    assert len(server.requests) == 2
    assert sleeps == [7.0]
    assert client.usage.retries == 1
    assert client.usage.errors == 0
    assert client.usage.calls == 1


async def test_retry_after_longer_than_we_wait_fails_fast(
    server: ScriptedLLMServer, make_client: ClientFactory, sleeps: list[float]
) -> None:
    server.script(ScriptedError(429, headers={"Retry-After": "3600"}))
    client = make_client("chat", max_retry_after_s=30.0)

    with pytest.raises(LLMUnavailableError) as caught:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert caught.value.attempts == 1
    assert isinstance(caught.value.cause, openai.RateLimitError)
    assert len(server.requests) == 1
    assert sleeps == []


async def test_server_errors_exhaust_retries_with_exponential_backoff(
    server: ScriptedLLMServer, make_client: ClientFactory, sleeps: list[float]
) -> None:
    server.script(*[ScriptedError(500) for _ in range(4)], ScriptedReply("never reached"))
    client = make_client("completions", max_retries=3)

    with pytest.raises(LLMUnavailableError) as caught:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert caught.value.attempts == 4
    assert isinstance(caught.value.cause, openai.InternalServerError)
    assert caught.value.__cause__ is caught.value.cause
    assert len(server.requests) == 4
    assert server.pending == 1
    # Jittered exponential backoff: the n-th wait lies in [base*2^n / 2, base*2^n].
    assert len(sleeps) == 3
    for n, delay in enumerate(sleeps):
        assert 0.5 * 2**n / 2 <= delay <= 0.5 * 2**n
    assert (client.usage.retries, client.usage.errors, client.usage.calls) == (3, 1, 0)


async def test_backoff_is_capped(
    server: ScriptedLLMServer, make_client: ClientFactory, sleeps: list[float]
) -> None:
    server.script(*[ScriptedError(503) for _ in range(6)])
    client = make_client("chat", max_retries=5, backoff_base_s=1.0, backoff_max_s=3.0)

    with pytest.raises(LLMUnavailableError):
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert len(sleeps) == 5
    assert all(delay <= 3.0 for delay in sleeps)
    assert all(delay >= 1.5 for delay in sleeps[2:])


async def test_timeout_is_retried(server: ScriptedLLMServer, make_client: ClientFactory) -> None:
    server.script(ScriptedDelay(2.0))  # then the default echo responder answers
    client = make_client("chat", timeout_s=0.3)

    completion = await client.generate(system=SYSTEM, user="hello", max_tokens=5)

    assert completion.text == "echo: hello"
    assert len(server.requests) == 2
    assert client.usage.retries == 1


async def test_persistent_timeouts_raise_unavailable(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    server.script(ScriptedDelay(2.0), ScriptedDelay(2.0))
    client = make_client("completions", timeout_s=0.3, max_retries=1)

    with pytest.raises(LLMUnavailableError) as caught:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert isinstance(caught.value.cause, openai.APITimeoutError)
    assert caught.value.attempts == 2
    assert len(server.requests) == 2


async def test_connection_refused_raises_unavailable(make_client: ClientFactory) -> None:
    client = make_client("chat", base_url="http://127.0.0.1:9/v1", max_retries=1)

    with pytest.raises(LLMUnavailableError) as caught:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert isinstance(caught.value.cause, openai.APIConnectionError)
    assert client.usage.retries == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "cmpl-broken", "choices": [{"text": ',  # invalid JSON
        '{"id": "cmpl-1", "object": "chat.completion", "model": "m"}',  # no choices
        '{"id": "cmpl-1", "choices": []}',  # empty choices
    ],
    ids=["invalid-json", "missing-choices", "empty-choices"],
)
@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_malformed_responses_are_retried(
    server: ScriptedLLMServer, make_client: ClientFactory, body: str, mode: ApiMode
) -> None:
    server.script(ScriptedMalformed(body), ScriptedReply("fine"))
    client = make_client(mode)

    completion = await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert completion.text == "fine"
    assert client.usage.retries == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(
    server: ScriptedLLMServer, make_client: ClientFactory, sleeps: list[float], status: int
) -> None:
    server.script(ScriptedError(status, message="context length exceeded"), ScriptedReply("unused"))
    client = make_client("chat")

    with pytest.raises(LLMRequestError) as caught:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)

    assert caught.value.status == status
    assert "context length exceeded" in str(caught.value)
    assert len(server.requests) == 1
    assert sleeps == []
    assert (client.usage.retries, client.usage.errors) == (0, 1)


async def test_stream_retries_failures_before_the_first_delta(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    server.script(
        ScriptedError(503),
        ScriptedMalformed('{"id": "chunk-without-choices"}'),  # a stream that ends with no finish_reason
        ScriptedReply("third time lucky"),
    )
    client = make_client("chat")

    completion = await client.stream(system=SYSTEM, user=USER, max_tokens=10).collect()

    assert completion.text == "third time lucky"
    assert client.usage.retries == 2
    assert len(server.requests) == 3


async def test_stream_broken_after_deltas_reports_the_partial_text(
    server: ScriptedLLMServer, make_client: ClientFactory
) -> None:
    server.script(ScriptedTruncatedStream("The answer is cut", chunk_chars=4), ScriptedReply("unused"))
    client = make_client("completions")

    received: list[str] = []
    with pytest.raises(LLMStreamInterrupted) as caught:
        async for delta in client.stream(system=SYSTEM, user=USER, max_tokens=10):
            received.append(delta)

    assert "".join(received) == "The answer is cut"
    assert caught.value.partial_text == "The answer is cut"
    assert isinstance(caught.value, LLMUnavailableError)  # callers' fallback path catches both
    assert len(server.requests) == 1
    assert client.usage.errors == 1


async def test_stream_can_be_abandoned_early(server: ScriptedLLMServer, make_client: ClientFactory) -> None:
    server.script(ScriptedReply("a long answer that the user cancelled", chunk_chars=2))
    client = make_client("chat")

    async with client.stream(system=SYSTEM, user=USER, max_tokens=30) as stream:
        async for _ in stream:
            break

    assert stream.completion is None
    assert client.usage.calls == 0
    # The connection is released: the next call on the same client works.
    assert (await client.generate(system=SYSTEM, user="again", max_tokens=5)).text == "echo: again"


# --------------------------------------------------------------------------- logging hygiene


async def test_secrets_never_reach_logs_or_errors(
    server: ScriptedLLMServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # includes openai's and httpx's own debug logging
    server.script(
        ScriptedError(429, headers={"Retry-After": "0"}),
        ScriptedReply("fine"),
        ScriptedMalformed(),
        ScriptedReply("streamed"),
        *[ScriptedError(500) for _ in range(3)],
        ScriptedError(400),
    )
    client = make_client("chat")
    errors: list[BaseException] = []

    with structlog.testing.capture_logs() as events:
        await client.generate(system=SYSTEM, user=USER, max_tokens=5)
        await client.stream(system=SYSTEM, user=USER, max_tokens=5).collect()
        for _ in range(2):
            try:
                await client.generate(system=SYSTEM, user=USER, max_tokens=5)
            except (LLMUnavailableError, LLMRequestError) as exc:
                errors.append(exc)

    event_names = [event["event"] for event in events]
    assert {"llm.retry", "llm.completion", "llm.unavailable", "llm.request_rejected"} <= set(event_names)
    assert len(errors) == 2
    assert SECRET not in repr(events)
    assert any(record.name.startswith("openai") for record in caplog.records)  # capture is live
    assert SECRET not in caplog.text
    for error in errors:
        assert SECRET not in str(error)
        assert SECRET not in repr(error.args)


def test_redact_url_drops_credentials() -> None:
    assert redact_url("https://user:pa55@llm.example.org:8443/v1") == "https://llm.example.org:8443/v1"
    assert redact_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"


# --------------------------------------------------------------------------- wiring


def test_api_mode_resolution() -> None:
    assert resolve_api_mode("auto", base_model=True) == "completions"
    assert resolve_api_mode("auto", base_model=False) == "chat"
    assert resolve_api_mode("chat", base_model=True) == "chat"
    assert resolve_api_mode("completions", base_model=False) == "completions"
    with pytest.raises(ValueError, match="LLM_API_MODE"):
        resolve_api_mode("legacy", base_model=False)


async def test_open_llm_uses_the_configured_server(
    server: ScriptedLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("LLM_MODEL", "hosted-model")
    settings = LLMSettings()

    client, local = await open_llm(settings, tmp_path)
    try:
        assert local is None
        assert client.api_mode == "chat"
        completion = await client.generate(system=SYSTEM, user="ping", max_tokens=5)
    finally:
        await client.aclose()

    assert completion.text == "echo: ping"
    assert server.requests[-1].json["model"] == "hosted-model"
    assert server.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"
    assert os.listdir(tmp_path) == []  # no local model was assembled


async def test_llm_session_honours_an_explicit_api_mode(
    server: ScriptedLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("LLM_API_MODE", "completions")

    async with llm_session(LLMSettings(), tmp_path) as client:
        await client.generate(system="s", user="u", max_tokens=5)

    assert server.requests[-1].path == "/v1/completions"


# --------------------------------------------------------------------------- the scripted server itself


async def test_scripted_embeddings_are_deterministic_unit_vectors(server: ScriptedLLMServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        first = await client.embeddings.create(model="emb", input=["attention", "convolution"])
        again = await client.embeddings.create(model="emb", input="attention", dimensions=8)
        floats = await client.embeddings.create(model="emb", input="attention", encoding_format="float")

    a, b = (item.embedding for item in first.data)
    assert len(a) == server.embedding_dimensions == 384
    assert math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-5)
    assert a != b
    assert floats.data[0].embedding == pytest.approx(a, abs=1e-6)
    assert len(again.data[0].embedding) == 8
    assert first.usage.prompt_tokens == server.count_tokens("attention") + server.count_tokens("convolution")
