"""Starts real `spillway simulate` and `spillway run` processes for the SDK tests.

The binary comes from $SPILLWAY_BIN (tests/run-all.sh builds it). Everything listens on
127.0.0.1 with ephemeral ports, learned from the JSON lines the processes print at start-up.
"""

import hashlib
import json
import os
import subprocess
import tempfile
import textwrap
import urllib.request

import pytest

BIN = os.environ.get("SPILLWAY_BIN", "target/debug/spillway")
# The SDKs authenticate to the gateway with a consumer API key; the gateway stores its hash.
CLIENT_KEY = "client-key"
CLIENT_KEY_SHA256 = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()


def _start(args, ready_key, env=None):
    proc = subprocess.Popen(
        [BIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines = []
    for _ in range(50):
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        lines.append(event)
        if ready_key in event:
            return proc, lines
    proc.kill()
    raise RuntimeError(f"{args[0]} did not become ready: {lines}")


def stop(*procs):
    """Terminates `procs`, killing any that do not exit within 10 s."""
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def http_json(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


class Stack:
    def __init__(self, gateway, admin, sim_url):
        self.gateway = gateway
        self.admin = admin
        self.sim_url = sim_url

    def ledger_entry(self, request_id):
        entries = http_json(f"{self.sim_url}/_sim/ledger")["entries"]
        matches = [e for e in entries if e.get("requestId") == request_id]
        assert len(matches) == 1, f"ledger has {len(matches)} entries for {request_id}"
        return matches[0]

    def usage_record(self, request_id):
        import time

        for _ in range(100):
            recent = http_json(f"{self.admin}/admin/usage")["recent"]
            found = [r for r in recent if r["request_id"] == request_id]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no usage record for {request_id}")


@pytest.fixture(scope="session")
def stack():
    workdir = tempfile.mkdtemp(prefix="spillway-sdk-")
    sim_config = os.path.join(workdir, "sim.yaml")
    with open(sim_config, "w") as f:
        f.write(textwrap.dedent(
            """
            backends:
              - name: east
                apiKey: sim-key
                completionTokens: 12
            """
        ))
    sim, sim_lines = _start(["simulate", "--config", sim_config], "ready")
    sim_url = next(e["url"] for e in sim_lines if e.get("backend") == "east")
    gw_config = os.path.join(workdir, "gateway.yaml")
    with open(gw_config, "w") as f:
        f.write(textwrap.dedent(
            f"""
            apiVersion: spillway.dev/v1alpha1
            kind: AIBackendPool
            metadata: {{name: chat}}
            spec:
              models: [gpt-4o, gpt-4o-mini, text-embedding-3-small]
              backends:
                - name: east
                  type: AzureOpenAI
                  url: {sim_url}
                  apiKey: {{env: SIM_KEY}}
            ---
            apiVersion: spillway.dev/v1alpha1
            kind: TokenQuota
            metadata: {{name: sdk-mini}}
            spec: {{appId: sdk-app, models: [gpt-4o-mini], requestsPerMinute: 120}}
            ---
            apiVersion: spillway.dev/v1alpha1
            kind: AIGateway
            metadata: {{name: gw}}
            spec:
              identity:
                apiKeys:
                  - {{appId: sdk-app, keySha256: {CLIENT_KEY_SHA256}}}
            """
        ))
    gw, gw_lines = _start(
        ["run", "--config", gw_config, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        "listening",
        env={"SIM_KEY": "sim-key"},
    )
    ready = gw_lines[-1]
    yield Stack(f"http://{ready['listening']}", f"http://{ready['admin']}", sim_url)
    stop(gw, sim)
