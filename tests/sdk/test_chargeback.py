"""Chargeback by token type, end to end with the official `openai` SDK.

Two apps (two consumer API keys) send mixed traffic through a real `spillway run` in front of
real `spillway simulate` backends: cached and uncached prompts, a reasoning model (`o4-mini`)
on chat and on the Responses API, streams with and without `stream_options.include_usage`,
`OpenAI` and `AzureOpenAI` clients. The priced pool has a provisioned (PTU) backend first and
a pay-as-you-go backend second that reports reasoning apart from the answer
(`reasoningUsage: separate`); mid-test the PTU starts answering 429 and traffic spills over.
A second pool has no prices. One stream is abandoned by its client after a few chunks.

Every call carries its own `x-request-id`, which joins the gateway's usage record with the
simulator's ledger entry. Then, exactly (money with `Decimal`):
1. each record's usage by type = the ledger's, never estimated;
2. per app and type, the `/admin/usage` rows sum to the ledger's sums over that app's calls;
3. each metered call costs the ledger's tokens by billing class × the rates, and per app the
   rows' metered cost is their sum; PTU calls are `provisioned`, weighted at the pool's rates;
4. the unpriced pool counts tokens and has no `cost` anywhere;
5. the abandoned stream is still recorded with the backend's usage and its cost.
"""

import hashlib
import os
import re
import tempfile
import textwrap
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from conftest import _start, http_json, stop
from openai import AzureOpenAI, OpenAI

AZURE_VERSION = "2025-03-01-preview"
APPS = {"app-a": "chargeback-key-a", "app-b": "chargeback-key-b"}
SIM_KEY = "chargeback-sim-key"
VISIBLE = 16  # the simulator's completionTokens: the visible answer of every call

# Rates per million tokens, as written in the pool's YAML.
RATES = {
    "o4-mini": {"input": "1.10", "cachedInput": "0.275", "output": "4.40", "reasoningOutput": "5.00"},
    None: {"input": "2.50", "cachedInput": "1.25", "output": "10.00"},
}
TOKEN_TYPES = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
ABSENT_TYPES = ("cache_write_tokens", "audio_input_tokens", "image_input_tokens", "audio_output_tokens")
ROW_FIELDS = {
    "prompt_tokens": "promptTokens",
    "completion_tokens": "completionTokens",
    "cached_tokens": "cachedTokens",
    "reasoning_tokens": "reasoningTokens",
}
LEDGER_FIELDS = {
    "prompt_tokens": "promptTokens",
    "completion_tokens": "completionTokens",
    "cached_tokens": "cachedTokens",
    "reasoning_tokens": "reasoningTokens",
}
AMOUNT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
DEADLINE_S = 15


def long_system_prompt(app):
    """A system prompt well over 1024 tokens, distinct per app (so each app's first call misses
    the prompt cache and its second hits it) and of a different length per app (so the apps'
    sums differ and a mix-up between them shows)."""
    count = {"app-a": 160, "app-b": 230}[app]
    rules = " ".join(
        f"Rule {i} for {app}: answer questions about topic number {i} politely, briefly and accurately."
        for i in range(count)
    )
    return f"You are the assistant of {app}. Follow every rule below.\n{rules}"


def rates_for(model):
    rates = RATES.get(model, RATES[None])
    rate = {k: Decimal(v) for k, v in rates.items()}
    # A type without its own rate costs what input or output costs.
    for derived, base in (
        ("cachedInput", "input"),
        ("cacheWriteInput", "input"),
        ("audioInput", "input"),
        ("imageInput", "input"),
        ("reasoningOutput", "output"),
        ("audioOutput", "output"),
    ):
        rate.setdefault(derived, rate[base])
    return rate


def expected_cost(model, billed):
    """What `billed` (ledger token counts) costs at the pool's rates for `model`: every billing
    class (disjoint) × its rate per million."""
    rate = rates_for(model)
    cached = billed["cached_tokens"]
    reasoning = billed["reasoning_tokens"]
    classes = {
        "input": billed["prompt_tokens"] - cached,
        "cachedInput": cached,
        "output": billed["completion_tokens"] - reasoning,
        "reasoningOutput": reasoning,
    }
    assert all(n >= 0 for n in classes.values()), classes
    return sum((Decimal(n) * rate[k] for k, n in classes.items()), Decimal(0)) / Decimal(1_000_000)


@dataclass
class Call:
    app: str
    pool: str
    model: str
    api: str  # chat | responses
    client: str  # openai | azure
    stream: str = "none"  # none | usage (stream_options.include_usage) | plain | abandon
    system: str | None = None
    expect_cached: bool | None = None
    rid: str = field(default_factory=lambda: f"chargeback-{uuid.uuid4().hex}")
    client_chunks: int = 0
    client_usage: object = None


class Chargeback:
    def __init__(self, gateway, admin, sims):
        self.gateway = gateway
        self.admin = admin
        self.sims = sims  # backend name -> url

    def client(self, app, kind):
        key = APPS[app]
        if kind == "azure":
            return AzureOpenAI(azure_endpoint=self.gateway, api_version=AZURE_VERSION, api_key=key, max_retries=0)
        return OpenAI(base_url=f"{self.gateway}/v1", api_key=key, max_retries=0)

    def ledger(self):
        return http_json(f"{self.sims['ptu']}/_sim/ledger")["entries"]

    def usage(self):
        return http_json(f"{self.admin}/admin/usage")

    def set_faults(self, backend, faults):
        http_json(f"{self.sims[backend]}/_sim/faults", method="POST", body=faults)

    def set_timing(self, backend, timing):
        http_json(f"{self.sims[backend]}/_sim/latency", method="POST", body=timing)

    def run(self, call):
        client = self.client(call.app, call.client)
        headers = {"x-request-id": call.rid}
        if call.api == "chat":
            messages = [{"role": "user", "content": f"Say something about {call.model}."}]
            if call.system:
                messages.insert(0, {"role": "system", "content": call.system})
            kwargs = {"model": call.model, "messages": messages, "extra_headers": headers}
            if call.stream == "none":
                answer = client.chat.completions.create(**kwargs)
                assert answer.choices[0].message.content
                call.client_usage = answer.usage
                return
            if call.stream == "usage":
                kwargs["stream_options"] = {"include_usage": True}
            if call.stream == "abandon":
                kwargs["max_completion_tokens"] = 200
            stream = client.chat.completions.create(stream=True, **kwargs)
            usage_chunks = []
            for chunk in stream:
                call.client_chunks += 1
                if chunk.usage is not None:
                    usage_chunks.append(chunk.usage)
                if call.stream == "abandon" and call.client_chunks == 3:
                    break
            stream.close()
            if call.stream == "usage":
                assert len(usage_chunks) == 1, f"{call.rid}: asked for usage, got {usage_chunks}"
                call.client_usage = usage_chunks[0]
            else:
                assert usage_chunks == [], f"{call.rid}: the gateway's own usage chunk reached the client"
            return
        assert call.api == "responses"
        kwargs = {"model": call.model, "input": f"Say something about {call.model}.", "extra_headers": headers}
        if call.system:
            kwargs["instructions"] = call.system
        if call.stream == "none":
            response = client.responses.create(**kwargs)
            assert response.status == "completed" and response.output_text
            call.client_usage = response.usage
            return
        completed = []
        with client.responses.create(stream=True, **kwargs) as stream:
            for event in stream:
                call.client_chunks += 1
                if event.type == "response.completed":
                    completed.append(event.response.usage)
        assert len(completed) == 1, call.rid
        call.client_usage = completed[0]

    def settle(self, calls):
        """Waits (bounded) until every call has its gateway record and its served ledger entry;
        returns {rid: record}, {rid: [ledger entries]}."""
        deadline = time.monotonic() + DEADLINE_S
        wanted = {c.rid for c in calls}
        while True:
            records = {r["request_id"]: r for r in self.usage()["recent"] if r["request_id"] in wanted}
            entries = defaultdict(list)
            for e in self.ledger():
                if e["requestId"] in wanted:
                    entries[e["requestId"]].append(e)
            served = {rid for rid, es in entries.items() if any(e["status"] == 200 for e in es)}
            if set(records) == wanted and served == wanted:
                return records, dict(entries)
            if time.monotonic() > deadline:
                missing_records = sorted(wanted - set(records))
                missing_ledger = sorted(wanted - served)
                raise AssertionError(f"not settled: no record for {missing_records}, no ledger for {missing_ledger}")
            time.sleep(0.05)


def billed(entries):
    """The tokens the ledger billed for one request id, by type (a refused attempt bills 0)."""
    return {t: sum(e[LEDGER_FIELDS[t]] for e in entries) for t in TOKEN_TYPES}


def usage_of(record):
    usage = record["usage"]
    # Optional types appear only when non-zero.
    for t in (*TOKEN_TYPES[2:], *ABSENT_TYPES):
        if t in usage:
            assert usage[t] > 0, f"{record['request_id']}: {t} is present but 0: {usage}"
    return {t: usage.get(t, 0) for t in TOKEN_TYPES}


@pytest.fixture(scope="module")
def chargeback():
    workdir = tempfile.mkdtemp(prefix="spillway-chargeback-")
    sim_config = os.path.join(workdir, "sim.yaml")
    with open(sim_config, "w") as f:
        f.write(textwrap.dedent(
            f"""
            backends:
              - {{name: ptu, apiKey: {SIM_KEY}, completionTokens: {VISIBLE}}}
              - {{name: paygo, apiKey: {SIM_KEY}, completionTokens: {VISIBLE}, reasoningUsage: separate}}
              - {{name: plain, apiKey: {SIM_KEY}, completionTokens: {VISIBLE}}}
            """
        ))
    sim, lines = _start(["simulate", "--config", sim_config], "ready")
    sims = {e["backend"]: e["url"] for e in lines if "backend" in e}
    keys = "\n".join(
        f"      - {{appId: {app}, keySha256: {hashlib.sha256(key.encode()).hexdigest()}}}"
        for app, key in APPS.items()
    )
    gw_config = os.path.join(workdir, "gateway.yaml")
    with open(gw_config, "w") as f:
        f.write(textwrap.dedent(
            f"""
            apiVersion: spillway.dev/v1alpha1
            kind: AIBackendPool
            metadata: {{name: priced}}
            spec:
              models: [gpt-4o, o4-mini]
              pricing:
                currency: USD
                rates:
                  - {{model: o4-mini, input: "1.10", cachedInput: "0.275", output: "4.40", reasoningOutput: "5.00"}}
                  - {{input: "2.50", cachedInput: "1.25", output: "10.00"}}
              backends:
                - name: ptu
                  type: AzureOpenAI
                  url: {sims['ptu']}
                  apiKey: {{env: SIM_KEY}}
                  priority: 1
                  pricing: {{provisioned: {{amount: "2.00", per: Hour}}}}
                - name: paygo
                  type: OpenAI
                  url: {sims['paygo']}
                  apiKey: {{env: SIM_KEY}}
                  priority: 2
            ---
            apiVersion: spillway.dev/v1alpha1
            kind: AIBackendPool
            metadata: {{name: unpriced}}
            spec:
              models: [gpt-4o-mini]
              backends:
                - name: plain
                  type: AzureOpenAI
                  url: {sims['plain']}
                  apiKey: {{env: SIM_KEY}}
            ---
            apiVersion: spillway.dev/v1alpha1
            kind: AIGateway
            metadata: {{name: gw}}
            spec:
              identity:
                apiKeys:
            """
        ) + keys + "\n")
    try:
        gw, gw_lines = _start(
            ["run", "--config", gw_config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
            "listening",
            env={"SIM_KEY": SIM_KEY},
        )
    except Exception:
        stop(sim)
        raise
    ready = gw_lines[-1]
    yield Chargeback(f"http://{ready['listening']}", f"http://{ready['admin']}", sims)
    stop(gw, sim)


def phase(app, other_client, pool="priced"):
    """One app's mix on the priced pool: a cached pair on each API, reasoning and not, streams
    with and without usage, both client classes."""
    system = long_system_prompt(app)
    return [
        Call(app, pool, "gpt-4o", "chat", "openai", system=system, expect_cached=False),
        Call(app, pool, "gpt-4o", "chat", "azure", system=system, expect_cached=True),
        Call(app, pool, "o4-mini", "chat", "azure", system=system, expect_cached=False),
        Call(app, pool, "o4-mini", "chat", "openai", stream="usage", system=system, expect_cached=True),
        Call(app, pool, "o4-mini", "responses", other_client, system=system, expect_cached=False),
        Call(app, pool, "o4-mini", "responses", "openai", stream="usage", system=system, expect_cached=True),
        Call(app, pool, "gpt-4o", "chat", "azure", stream="plain"),
        Call(app, pool, "o4-mini", "chat", "openai", stream="plain"),
        Call(app, pool, "gpt-4o", "chat", "openai", stream="usage"),
        Call(app, pool, "o4-mini", "chat", other_client),
    ]


@pytest.fixture(scope="module")
def traffic(chargeback):
    started = time.monotonic()
    # Phase 1: the PTU serves everything.
    ptu_calls = phase("app-a", "azure") + phase("app-b", "openai")
    for call in ptu_calls:
        chargeback.run(call)
    # The PTU is full: every call from now on gets a 429 with a long retry-after-ms there.
    chargeback.set_faults(
        "ptu", {"mode": "status", "status": 429, "headers": {"retry-after-ms": "60000"}, "message": "PTU full"}
    )
    paygo_calls = phase("app-b", "azure") + phase("app-a", "openai")
    for call in paygo_calls:
        chargeback.run(call)  # max_retries=0: a 429 reaching the client raises
    # The pool without prices.
    unpriced_calls = [
        Call("app-a", "unpriced", "gpt-4o-mini", "chat", "openai"),
        Call("app-a", "unpriced", "gpt-4o-mini", "chat", "azure", stream="plain"),
        Call("app-b", "unpriced", "gpt-4o-mini", "chat", "azure", stream="usage"),
        Call("app-b", "unpriced", "gpt-4o-mini", "chat", "openai"),
    ]
    for call in unpriced_calls:
        chargeback.run(call)
    # A stream the client abandons after 3 chunks, paced so that most of it is still to come.
    chargeback.set_timing("paygo", {"tokensPerSecond": 100})
    abandoned = Call("app-b", "priced", "o4-mini", "chat", "azure", stream="abandon")
    chargeback.run(abandoned)
    calls = ptu_calls + paygo_calls + unpriced_calls + [abandoned]
    records, entries = chargeback.settle(calls)
    chargeback.set_timing("paygo", {"tokensPerSecond": 0})
    assert time.monotonic() - started < 45, "the traffic took too long"
    return {
        "calls": calls,
        "ptu": ptu_calls,
        "paygo": paygo_calls,
        "unpriced": unpriced_calls,
        "abandoned": abandoned,
        "records": records,
        "entries": entries,
        "usage": chargeback.usage(),
    }


def served_entry(entries):
    served = [e for e in entries if e["status"] == 200]
    assert len(served) == 1, entries
    return served[0]


def test_the_traffic_went_where_it_should(traffic):
    records, entries = traffic["records"], traffic["entries"]
    for call in traffic["ptu"]:
        assert records[call.rid]["backend"] == "ptu", call
        assert [e["backend"] for e in entries[call.rid]] == ["ptu"], call
    # Spillover: the first call after the fault was refused by the PTU and served by paygo in
    # the same request; every later one went to paygo (breaker open), none reached the client
    # as a 429 (the SDK, without retries, would have raised).
    first = traffic["paygo"][0]
    assert sorted((e["backend"], e["status"]) for e in entries[first.rid]) == [("paygo", 200), ("ptu", 429)]
    for call in traffic["paygo"] + [traffic["abandoned"]]:
        assert records[call.rid]["backend"] == "paygo", call
        assert records[call.rid]["status"] == 200, records[call.rid]
        assert served_entry(entries[call.rid])["backend"] == "paygo"
    for call in traffic["unpriced"]:
        assert (records[call.rid]["pool"], records[call.rid]["backend"]) == ("unpriced", "plain")
    for call in traffic["calls"]:
        record = records[call.rid]
        assert (record["app_id"], record["model"]) == (call.app, call.model), record
        assert record["stream"] == (call.stream != "none"), record
    # The mix really has every kind of token, on both reporting shapes.
    for group in ("ptu", "paygo"):
        ledger = [served_entry(entries[c.rid]) for c in traffic[group]]
        assert any(e["cachedTokens"] > 0 for e in ledger), group
        assert any(e["reasoningTokens"] > 0 and e["cachedTokens"] > 0 for e in ledger), group
    for call in traffic["calls"]:
        entry = served_entry(entries[call.rid])
        if call.expect_cached is not None:
            assert (entry["cachedTokens"] > 0) == call.expect_cached, (call, entry)
        assert (entry["reasoningTokens"] > 0) == call.model.startswith("o4"), (call, entry)
        # A stream without stream_options: the gateway asked for usage itself (and hid it).
        if call.stream in ("plain", "usage") and call.api == "chat":
            assert entry["includeUsage"], (call, entry)


def test_each_call_is_recorded_by_token_type_as_the_backend_billed_it(traffic):
    for call in traffic["calls"]:
        record = traffic["records"][call.rid]
        assert record["estimated"] is False, record
        assert usage_of(record) == billed(traffic["entries"][call.rid]), (call, record["usage"])
        for t in ABSENT_TYPES:
            assert t not in record["usage"], record["usage"]


def app_row_sums(rows, app):
    sums = defaultdict(int)
    for row in rows:
        if row["appId"] != app:
            continue
        sums["requests"] += row["requests"]
        sums["estimatedRequests"] += row["estimatedRequests"]
        for t, f in ROW_FIELDS.items():
            sums[t] += row[f]
        for f in ("cacheWriteTokens", "audioInputTokens", "imageInputTokens", "audioOutputTokens"):
            sums[f] += row[f]
    return sums


def test_per_app_sums_by_token_type_equal_the_ledger(traffic):
    rows = traffic["usage"]["rows"]
    assert {row["appId"] for row in rows} == set(APPS), rows
    assert traffic["usage"]["lost"] == 0
    for app in APPS:
        calls = [c for c in traffic["calls"] if c.app == app]
        sums = app_row_sums(rows, app)
        expected = defaultdict(int)
        for call in calls:
            for t, n in billed(traffic["entries"][call.rid]).items():
                expected[t] += n
        assert sums["requests"] == len(calls), (app, sums)
        assert sums["estimatedRequests"] == 0, (app, sums)
        for t in TOKEN_TYPES:
            assert sums[t] == expected[t], (app, t, sums[t], expected[t])
        for f in ("cacheWriteTokens", "audioInputTokens", "imageInputTokens", "audioOutputTokens"):
            assert sums[f] == 0, (app, f)
        assert expected["cached_tokens"] > 0 and expected["reasoning_tokens"] > 0, (app, expected)


def test_cost_per_call_and_per_app_is_exact(traffic):
    records, entries = traffic["records"], traffic["entries"]
    metered = defaultdict(Decimal)
    provisioned = defaultdict(Decimal)
    for call in traffic["calls"]:
        if call.pool != "priced":
            continue
        record = records[call.rid]
        cost = record.get("cost")
        assert cost is not None, record
        assert cost["currency"] == "USD", cost
        assert AMOUNT.match(cost["amount"]), cost
        want = expected_cost(call.model, billed(entries[call.rid]))
        assert want > 0
        assert Decimal(cost["amount"]) == want, (call, record["usage"], cost, want)
        if record["backend"] == "ptu":
            # Not billed per call: its weight at the pool's rates (the PTU has none of its own).
            assert cost["kind"] == "provisioned", record
            provisioned[call.app] += want
        else:
            assert cost["kind"] == "metered", record
            metered[call.app] += want
    rows = traffic["usage"]["rows"]
    for app in APPS:
        row_metered = Decimal(0)
        row_provisioned = Decimal(0)
        for row in rows:
            if row["appId"] != app or row["pool"] != "priced":
                continue
            assert row["cost"]["currency"] == "USD", row
            assert AMOUNT.match(row["cost"]["amount"]), row
            kind = {"ptu": "provisioned", "paygo": "metered"}[row["backend"]]
            assert row["cost"]["kind"] == kind, row
            if kind == "metered":
                row_metered += Decimal(row["cost"]["amount"])
            else:
                row_provisioned += Decimal(row["cost"]["amount"])
        assert metered[app] > 0 and provisioned[app] > 0, app
        assert row_metered == metered[app], (app, row_metered, metered[app])
        assert row_provisioned == provisioned[app], (app, row_provisioned, provisioned[app])


def test_a_pool_without_prices_counts_tokens_without_cost(traffic):
    for call in traffic["unpriced"]:
        record = traffic["records"][call.rid]
        assert "cost" not in record, record
        assert record["usage"]["prompt_tokens"] > 0 and record["usage"]["completion_tokens"] > 0, record
    rows = [r for r in traffic["usage"]["rows"] if r["pool"] == "unpriced"]
    assert {r["appId"] for r in rows} == set(APPS), rows
    for row in rows:
        assert "cost" not in row, row
        assert row["promptTokens"] > 0 and row["completionTokens"] > 0, row


def test_an_abandoned_stream_is_recorded_with_the_backends_usage_and_cost(traffic):
    call = traffic["abandoned"]
    record = traffic["records"][call.rid]
    entry = served_entry(traffic["entries"][call.rid])
    assert call.client_chunks == 3
    assert record["client_disconnected"] is True, record
    assert record["estimated"] is False, record
    # The gateway drained the rest to learn the usage, so the backend sent (and billed) it all:
    # max_completion_tokens 200 = reasoning 100 + visible 100.
    assert entry["aborted"] is False, entry
    assert (entry["completionTokens"], entry["reasoningTokens"]) == (200, 100), entry
    assert usage_of(record) == billed([entry]), (record["usage"], entry)
    assert record["cost"]["kind"] == "metered", record
    assert Decimal(record["cost"]["amount"]) == expected_cost("o4-mini", billed([entry])), record
