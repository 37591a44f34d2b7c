"""Every call an app makes, through Spillway with the official `openai` SDK (issue #14):
model lists on both client classes, the Azure Responses API (create, retrieve, delete,
input items, input token counting), a 20-turn `previous_response_id` chain over a weighted
two-backend pool that never leaves the backend holding it, a background response polled to
completion and counted once (= the simulator's ledger), and the same chain across two
gateway replicas sharing the response map through Redis.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import uuid

import openai
import pytest
from conftest import CLIENT_KEY, CLIENT_KEY_SHA256, _start, http_json, stop
from openai import AzureOpenAI, OpenAI

AZURE_VERSION = "2025-03-01-preview"


def rid():
    return f"surface-{uuid.uuid4().hex}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_config(workdir, name, urls, redis_url=None):
    rate_limiting = ""
    if redis_url:
        rate_limiting = f"  rateLimiting: {{mode: Redis, redis: {{url: '{redis_url}'}}}}\n"
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent(
            f"""
            apiVersion: spillway.dev/v1alpha1
            kind: AIBackendPool
            metadata: {{name: chat}}
            spec:
              models: [gpt-4o, gpt-4o-mini]
              backends:
                - {{name: east, type: AzureOpenAI, url: "{urls['east']}", weight: 1}}
                - {{name: west, type: AzureOpenAI, url: "{urls['west']}", weight: 1}}
            ---
            apiVersion: spillway.dev/v1alpha1
            kind: AIGateway
            metadata: {{name: gw}}
            spec:
              identity:
                apiKeys:
                  - {{appId: surface-app, keySha256: {CLIENT_KEY_SHA256}}}
            """
        ) + rate_limiting)
    return path


class Surface:
    def __init__(self, sim_urls, gateways):
        self.sim_urls = sim_urls
        self.gateways = gateways  # [(url, admin)]

    def ledger(self):
        any_url = next(iter(self.sim_urls.values()))
        return http_json(f"{any_url}/_sim/ledger")["entries"]

    def records(self, admin):
        return http_json(f"{admin}/admin/usage")["recent"]

    def oai(self, i=0):
        return OpenAI(base_url=f"{self.gateways[i][0]}/v1", api_key=CLIENT_KEY, max_retries=0)

    def azure(self, i=0):
        return AzureOpenAI(
            azure_endpoint=self.gateways[i][0], api_version=AZURE_VERSION, api_key=CLIENT_KEY, max_retries=0
        )


@pytest.fixture(scope="module")
def surface():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (tests/run-all.sh installs it)")
    workdir = tempfile.mkdtemp(prefix="spillway-surface-")
    sim_config = os.path.join(workdir, "sim.yaml")
    with open(sim_config, "w") as f:
        f.write("backends:\n  - {name: east, backgroundMs: 300}\n  - {name: west, backgroundMs: 300}\n")
    sim, lines = _start(["simulate", "--config", sim_config], "ready")
    urls = {e["backend"]: e["url"] for e in lines if "backend" in e}
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [sim, redis]
    gateways = []
    for name in ("one", "two"):
        config = gateway_config(workdir, name, urls, redis_url=f"redis://127.0.0.1:{port}")
        gw, gw_lines = _start(
            ["run", "--config", config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], "listening"
        )
        procs.append(gw)
        ready = gw_lines[-1]
        gateways.append((f"http://{ready['listening']}", f"http://{ready['admin']}"))
    yield Surface(urls, gateways)
    stop(*reversed(procs))


def test_model_lists_on_both_clients(surface):
    for client in (surface.oai(), surface.azure()):
        ids = sorted(m.id for m in client.models.list())
        assert ids == ["gpt-4o", "gpt-4o-mini"]
        model = client.models.retrieve("gpt-4o-mini")
        assert model.id == "gpt-4o-mini" and model.object == "model"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("no-such-model")


def test_azure_responses_create_retrieve_input_items_delete(surface):
    client = surface.azure()
    request_id = rid()
    created = client.responses.with_raw_response.create(
        model="gpt-4o", input="Hello through the gateway.", extra_headers={"x-request-id": request_id}
    )
    home = created.headers["x-spillway-backend"]
    response = created.parse()
    assert response.output_text
    entry = [e for e in surface.ledger() if e.get("requestId") == request_id]
    assert len(entry) == 1 and entry[0]["backend"] == home
    assert response.usage.input_tokens == entry[0]["promptTokens"]
    assert response.usage.output_tokens == entry[0]["completionTokens"]

    fetched = client.responses.with_raw_response.retrieve(response.id)
    assert fetched.headers["x-spillway-backend"] == home
    assert fetched.parse().id == response.id
    items = client.responses.input_items.list(response.id)
    assert len(items.data) >= 1
    counted = client.responses.input_tokens.count(model="gpt-4o", input="How many tokens is this?")
    assert counted.input_tokens > 0
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def chain(clients, turns):
    """Runs a `previous_response_id` chain of `turns` turns, turn i on clients[i % len]; returns
    the backend of each turn."""
    backends = []
    previous = None
    for turn in range(turns):
        client = clients[turn % len(clients)]
        extra = {} if previous is None else {"previous_response_id": previous}
        raw = client.responses.with_raw_response.create(model="gpt-4o", input=f"Turn {turn}.", **extra)
        backends.append(raw.headers["x-spillway-backend"])
        previous = raw.parse().id
    return backends


def test_a_twenty_turn_chain_stays_on_its_backend(surface):
    # Several chains, so both backends of the weighted pool start some of them.
    starts = set()
    for _ in range(4):
        backends = chain([surface.oai()], 20)
        assert len(set(backends)) == 1, backends
        starts.add(backends[0])
    assert starts, "chains ran"


def test_the_same_chain_across_two_replicas_through_redis(surface):
    seen = max((e["seq"] for e in surface.ledger()), default=0)
    for _ in range(3):
        backends = chain([surface.oai(0), surface.oai(1)], 10)
        assert len(set(backends)) == 1, backends
    # Neither replica had to search: no backend ever answered "not found".
    assert not [e for e in surface.ledger() if e["seq"] > seen and e.get("status") == 404]


def record_of(admin, request_id):
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in http_json(f"{admin}/admin/usage")["recent"] if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} records for {request_id}"
            return found[0]
        time.sleep(0.05)


def tokens(record):
    return record["usage"]["prompt_tokens"] + record["usage"]["completion_tokens"]


def test_a_background_response_is_counted_once(surface):
    client = surface.oai()
    admin = surface.gateways[0][1]
    before = sum(e["promptTokens"] + e["completionTokens"] for e in surface.ledger())
    create_id = rid()
    created = client.responses.create(
        model="gpt-4o", input="Write at length.", background=True, extra_headers={"x-request-id": create_id}
    )
    assert created.status in ("queued", "in_progress")
    polls = []
    deadline = time.monotonic() + 5
    while True:
        polls.append(rid())
        polled = client.responses.retrieve(created.id, extra_headers={"x-request-id": polls[-1]})
        if polled.status == "completed":
            break
        assert time.monotonic() < deadline, polled.status
        time.sleep(0.05)
    for _ in range(3):
        polls.append(rid())
        assert client.responses.retrieve(created.id, extra_headers={"x-request-id": polls[-1]}).status == "completed"
    total = polled.usage.input_tokens + polled.usage.output_tokens
    assert total > 0
    counted = [tokens(record_of(admin, request_id)) for request_id in [create_id, *polls]]
    # Counted once: on the poll that first saw it finished, nowhere else.
    assert sorted(counted) == [0] * (len(counted) - 1) + [total], counted
    assert counted[0] == 0, "the queued create bills nothing yet"
    billed = sum(e["promptTokens"] + e["completionTokens"] for e in surface.ledger()) - before
    assert billed == total, "the simulator billed the same tokens once"


def test_a_conversation_stays_on_its_backend(surface):
    client = surface.oai()
    raw = client.conversations.with_raw_response.create(
        items=[{"type": "message", "role": "user", "content": "Remember the number 7."}]
    )
    home = raw.headers["x-spillway-backend"]
    conversation = raw.parse()
    for turn in range(6):
        answer = client.responses.with_raw_response.create(
            model="gpt-4o", input=f"Turn {turn}: what was the number?", conversation=conversation.id
        )
        assert answer.headers["x-spillway-backend"] == home
        assert answer.parse().output_text
    items = client.conversations.items.list(conversation.id, limit=100)
    assert len(items.data) > 6
    # The other replica finds it through Redis.
    other = surface.oai(1).conversations.with_raw_response.retrieve(conversation.id)
    assert other.headers["x-spillway-backend"] == home
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
