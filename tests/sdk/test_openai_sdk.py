"""The official `openai` Python SDK works unchanged through Spillway: only the base URL differs.

Both client classes (`OpenAI` and `AzureOpenAI`), streaming and not, with and without
`stream_options`; token usage reported to the SDK and recorded by the gateway equals what
the simulated backend billed; the client's key never reaches the backend.
"""

import time
import uuid

from conftest import http_json

import openai
import pytest
from openai import AzureOpenAI, OpenAI

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the gateway."},
]


def rid():
    return f"sdk-{uuid.uuid4().hex}"


@pytest.fixture
def oai(stack):
    return OpenAI(base_url=f"{stack.gateway}/v1", api_key="client-key", max_retries=0)


@pytest.fixture
def azure(stack):
    return AzureOpenAI(azure_endpoint=stack.gateway, api_version="2024-10-21", api_key="client-key", max_retries=0)


def assert_matches_ledger(stack, request_id, prompt, completion):
    entry = stack.ledger_entry(request_id)
    assert entry["promptTokens"] == prompt
    assert entry["completionTokens"] == completion
    record = stack.usage_record(request_id)
    assert record["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion}
    assert record["estimated"] is False
    assert entry["apiKey"] == "sim-key", "the backend must see the gateway's key"
    assert entry.get("authorization") in (None, ""), "the client's credential must not be forwarded"
    return record


def statuses_of(stack, request_id, count):
    """The statuses the gateway recorded for `request_id`, once `count` records arrived
    (usage records reach /admin/usage through a queue; bounded wait of 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        recent = http_json(f"{stack.admin}/admin/usage")["recent"]
        statuses = [r["status"] for r in recent if r["request_id"] == request_id]
        if len(statuses) >= count or time.monotonic() > deadline:
            return statuses
        time.sleep(0.05)


def test_openai_client_chat(stack, oai):
    request_id = rid()
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=8, extra_headers={"x-request-id": request_id}
    )
    assert raw.headers["x-spillway-backend"] == "east"
    completion = raw.parse()
    assert completion.choices[0].message.content
    usage = completion.usage
    assert usage.completion_tokens == 8
    record = assert_matches_ledger(stack, request_id, usage.prompt_tokens, usage.completion_tokens)
    assert record["app_id"] == "sdk-app", "the consumer API key names the app"


def test_openai_client_stream_without_usage_hides_the_injected_chunk(stack, oai):
    request_id = rid()
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"x-request-id": request_id}
    )
    chunks = list(stream)
    assert chunks, "the stream must carry chunks"
    assert all(c.usage is None for c in chunks), "the client did not ask for usage"
    # Azure's first chunk legitimately has no choices (it carries prompt_filter_results);
    # the injected usage-only chunk must be gone.
    assert all(c.choices or getattr(c, "prompt_filter_results", None) for c in chunks), "the usage-only chunk must be removed"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    entry = stack.ledger_entry(request_id)
    assert entry["includeUsage"] is True, "the gateway asks the backend for usage"
    record = stack.usage_record(request_id)
    assert record["usage"] == {"prompt_tokens": entry["promptTokens"], "completion_tokens": entry["completionTokens"]}
    assert record["estimated"] is False


def test_openai_client_stream_with_usage(stack, oai):
    request_id = rid()
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=5,
        extra_headers={"x-request-id": request_id},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == 5
    assert_matches_ledger(stack, request_id, usage.prompt_tokens, usage.completion_tokens)


def test_azure_client_chat_and_stream(stack, azure):
    request_id = rid()
    completion = azure.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"x-request-id": request_id}
    )
    assert completion.choices[0].message.content
    assert_matches_ledger(stack, request_id, completion.usage.prompt_tokens, completion.usage.completion_tokens)

    request_id = rid()
    chunks = list(azure.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"x-request-id": request_id}
    ))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.usage is None for c in chunks)
    entry = stack.ledger_entry(request_id)
    record = stack.usage_record(request_id)
    assert record["usage"]["completion_tokens"] == entry["completionTokens"]


def test_azure_client_embeddings(stack, azure):
    request_id = rid()
    result = azure.embeddings.create(
        model="text-embedding-3-small", input=["hello", "gateway"], extra_headers={"x-request-id": request_id}
    )
    assert len(result.data) == 2 and result.data[0].embedding
    assert_matches_ledger(stack, request_id, result.usage.prompt_tokens, 0)


def test_responses_api(stack, oai):
    request_id = rid()
    response = oai.responses.create(
        model="gpt-4o", input="Say hello.", extra_headers={"x-request-id": request_id}
    )
    assert response.output_text
    assert_matches_ledger(stack, request_id, response.usage.input_tokens, response.usage.output_tokens)


def test_unknown_deployment_is_a_not_found_error(azure, oai):
    with pytest.raises(openai.NotFoundError) as info:
        azure.chat.completions.create(model="no-such-deployment", messages=MESSAGES)
    assert info.value.code == "DeploymentNotFound"
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.code == "model_not_found"


def test_a_wrong_key_is_an_authentication_error_and_never_reaches_the_backend(stack):
    for client in (
        OpenAI(base_url=f"{stack.gateway}/v1", api_key="wrong-key", max_retries=0),
        AzureOpenAI(azure_endpoint=stack.gateway, api_version="2024-10-21", api_key="wrong-key", max_retries=0),
    ):
        request_id = rid()
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-request-id": request_id})
        assert info.value.status_code == 401
        assert info.value.code == "unknown_api_key"
        entries = http_json(f"{stack.sim_url}/_sim/ledger")["entries"]
        assert not [e for e in entries if e.get("requestId") == request_id]


def test_the_sdk_rides_through_a_quota_429_with_its_own_retries(stack):
    """gpt-4o-mini has a 120 requests/minute quota for sdk-app: spend it, then a client with
    max_retries waits the gateway's exact retry-after-ms and its retry is admitted."""

    strict = OpenAI(base_url=f"{stack.gateway}/v1", api_key="client-key", max_retries=0)
    patient = OpenAI(base_url=f"{stack.gateway}/v1", api_key="client-key", max_retries=2)

    def spend():
        """Spends the quota until refused; returns the refusal and when its call was sent."""
        for _ in range(200):
            sent = time.monotonic()
            try:
                strict.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=1)
            except openai.RateLimitError as error:
                return error, sent
        raise AssertionError("120 requests per minute must run out")

    # The patient call follows the refusal at once, but a loaded machine may take longer than
    # the 0.5 s refill between the two: then it is admitted without a retry, legitimately.
    # Rounds repeat (bounded) until the SDK's own retry is seen.
    for _ in range(5):
        refused, refused_sent = spend()
        assert refused.code == "rate_limit_exceeded"
        wait_ms = int(refused.response.headers["retry-after-ms"])
        assert 0 < wait_ms <= 500, "one request refills in 0.5 s"
        request_id = rid()
        started = time.monotonic()
        raw = patient.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=1, extra_headers={"x-request-id": request_id}
        )
        assert raw.http_response.status_code == 200
        recent = http_json(f"{stack.admin}/admin/usage")["recent"]
        statuses = [r["status"] for r in recent if r["request_id"] == request_id]
        if raw.retries_taken == 0:
            assert statuses == [200], statuses
            assert time.monotonic() - refused_sent >= wait_ms / 1000, "admitted before the refill"
            continue
        # Had the SDK retried before the gateway's exact retry-after-ms, the retry would have
        # been refused again: one retry and [429, 200] prove the wait was right and sufficient.
        assert raw.retries_taken == 1, "refused once, admitted on the first retry"
        assert time.monotonic() - started < 5, "the wait was the short retry-after-ms, not a default backoff"
        assert statuses == [429, 200], statuses
        return
    raise AssertionError("the SDK never had to retry: the machine is too slow to spend the quota")
