//! Money budgets on TokenQuota, enforced by real `spillway run` gateways in front of real
//! `spillway simulate` backends: 50 concurrent streams never spend more than a daily budget
//! (Local mode, and three gateways sharing it through a real Redis), refusals are 403
//! `budget_exceeded` with a `Retry-After` at the next UTC midnight, reservations are trued up to
//! the real cost (refunds make room for more calls) and what is left is exact to the nano;
//! other currencies, unpriced and provisioned pools are not counted; a refusal is recorded and
//! never reaches a backend.
//!
//! Money is compared exactly: the gateway's `cost.amount` (a decimal string) and the
//! simulator's billed tokens times the pool's rates, both in picos (1e-12 of the currency).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[allow(dead_code)]
#[path = "../../sidecar/tests/common/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{Gateway, Reply, Sim, http, open, pool_yaml};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use redis_server::RedisServer;
use serde_json::{Value, json};

/// The pool's rates (east serves every call): picos per token, i.e. micros per million tokens.
const INPUT: u128 = 2_500_000;
const CACHED_INPUT: u128 = 1_250_000;
const OUTPUT: u128 = 10_000_000;
/// The pool's highest rates (west's own, priority 2, never needed here): reservations are
/// priced at these, in nanos per token.
const CEILING_INPUT: u64 = 5_000;
const CEILING_OUTPUT: u64 = 15_000;
/// Completion tokens the quota reserves for a call without `max_tokens`.
const DEFAULT_MAX_TOKENS: u64 = 100;
/// Completion tokens the simulator really generates for such a call.
const SIM_COMPLETION: u64 = 40;
/// Concurrent streams per round.
const STREAMS: usize = 50;
/// Budget: about this many reservations (the rest of the budget is sized exactly).
const RESERVATIONS_IN_BUDGET: u64 = 24;

const NANOS_PER_UNIT: u64 = 1_000_000_000;
const PICOS_PER_NANO: u128 = 1_000;

/// east paces its streams (40 tokens at 400/s: ~100 ms), so all 50 admissions of a round
/// happen before any of its calls is trued up.
fn sim_yaml() -> String {
    format!(
        "backends:\n  - name: east\n    completionTokens: {SIM_COMPLETION}\n    tokensPerSecond: 400\n  - name: west\n"
    )
}

/// Pool `chat` (gpt-4o): east (priority 1) at the pool's rates, west (priority 2) at higher
/// rates of its own — the ceiling every reservation is priced at.
fn chat_pool(sim: &Sim) -> String {
    let backends = format!(
        "    - {{name: east, url: '{}', priority: 1}}\n    - name: west\n      url: '{}'\n      priority: 2\n      pricing: {{rates: [{{input: '5.00', output: '15.00'}}]}}\n",
        sim.url("east"),
        sim.url("west")
    );
    pool_yaml(
        "chat",
        &["gpt-4o"],
        &backends,
        "  pricing:\n    currency: USD\n    rates: [{input: '2.50', cachedInput: '1.25', output: '10.00'}]\n",
    )
}

fn quota(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

fn aigateway(spec: &str) -> String {
    format!(
        "---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec: {spec}\n"
    )
}

const LOCAL: &str = "{identity: {trustedHeader: x-app-id}}";

fn redis_mode(redis: &RedisServer) -> String {
    format!(
        "{{identity: {{trustedHeader: x-app-id}}, rateLimiting: {{mode: Redis, redis: {{url: '{}', onRedisUnavailable: FailClosed, timeout: 2s}}}}}}",
        redis.url()
    )
}

/// The daily USD budget of app-a, `nanos` (a whole number of micros).
fn spend_quota(nanos: u64) -> String {
    assert_eq!(nanos % 1_000, 0, "amounts are exact to a millionth");
    quota(
        "spend",
        &format!(
            "{{appId: app-a, defaultMaxTokens: {DEFAULT_MAX_TOKENS}, budgets: [{{period: Daily, amount: '{}', currency: USD}}]}}",
            decimal(nanos)
        ),
    )
}

/// `nanos` as a decimal amount of the currency.
fn decimal(nanos: u64) -> String {
    format!("{}.{:09}", nanos / NANOS_PER_UNIT, nanos % NANOS_PER_UNIT)
}

/// An exact decimal amount in picos.
fn picos(amount: &str) -> u128 {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    assert!(
        !whole.is_empty()
            && fraction.len() <= 12
            && whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit()),
        "not an exact decimal amount: {amount:?}"
    );
    let fraction: u128 = format!("{fraction:0<12}").parse().unwrap();
    whole.parse::<u128>().unwrap() * 1_000_000_000_000 + fraction
}

/// What the limiter counts for a cost: nanos, rounded up.
fn nanos_up(picos: u128) -> u64 {
    u64::try_from(picos.div_ceil(PICOS_PER_NANO)).unwrap()
}

/// The gateway's prompt estimate of a body: one token per 4 bytes, rounded up.
fn estimate(body: &Value) -> u64 {
    (body.to_string().len() as u64).div_ceil(4)
}

/// Nanos a call reserves in pool `chat`: its prompt estimate and completion limit at the
/// pool's highest rates.
fn reservation(body: &Value, completion: u64) -> u64 {
    estimate(body) * CEILING_INPUT + completion * CEILING_OUTPUT
}

const PROMPT: &str = "Tell me about spillways.";

/// The burst's call: a stream with no `max_tokens`, so it reserves the quota's
/// `defaultMaxTokens` while the simulator writes `SIM_COMPLETION` tokens.
fn stream_body() -> Value {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": PROMPT}]})
}

fn probe_body(max_tokens: u64) -> Value {
    json!({"model": "gpt-4o", "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}]})
}

/// What the simulator billed for one ledger entry, at east's rates, in picos.
fn billed_picos(entry: &Value) -> u128 {
    let n = |key: &str| u128::from(entry[key].as_u64().unwrap_or(0));
    let (prompt, cached) = (n("promptTokens"), n("cachedTokens"));
    (prompt - cached) * INPUT + cached * CACHED_INPUT + n("completionTokens") * OUTPUT
}

/// The metered USD cost of a served call's record, in picos.
fn metered_picos(record: &Value) -> u128 {
    let cost = &record["cost"];
    assert_eq!(
        (cost["currency"].as_str(), cost["kind"].as_str()),
        (Some("USD"), Some("metered")),
        "{record}"
    );
    picos(cost["amount"].as_str().expect("an exact amount"))
}

/// Every ledger entry of the simulator, by request id.
async fn ledger(sim: &Sim) -> HashMap<String, Value> {
    let mut entries = HashMap::new();
    for backend in sim.urls.keys() {
        for entry in sim.entries(backend).await {
            let id = entry["requestId"].as_str().unwrap().to_owned();
            assert!(
                entries.insert(id.clone(), entry).is_none(),
                "two entries for {id}"
            );
        }
    }
    entries
}

async fn recent(gw: &Gateway) -> Vec<Value> {
    http(Method::GET, &format!("{}/admin/usage", gw.admin), &[], "")
        .await
        .json()["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The records of `ids` (waits until every one is written: a local true-up happens before).
async fn records(gw: &Gateway, ids: &[String]) -> HashMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: HashMap<String, Value> = recent(gw)
            .await
            .into_iter()
            .filter_map(|r| {
                let id = r["request_id"].as_str()?.to_owned();
                ids.contains(&id).then_some((id, r))
            })
            .collect();
        if found.len() == ids.len() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} records written",
            found.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One client call and its whole answer.
struct Answer {
    id: String,
    gateway: usize,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

async fn send(gw: &Gateway, gateway: usize, app: &str, id: &str, body: Value) -> Answer {
    let url = format!("{}/v1/chat/completions", gw.url);
    let response = open(&url, &[("x-app-id", app), ("x-request-id", id)], body).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole answer")
        .to_bytes();
    Answer {
        id: id.to_owned(),
        gateway,
        status,
        headers,
        body,
    }
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `(year, month, day)` of a day count since 1970-01-01 (H. Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The next 00:00 UTC: `(seconds from now, "YYYY-MM-DD")`.
fn next_utc_midnight() -> (u64, String) {
    let now = unix_now();
    let next = (now / 86_400 + 1) * 86_400;
    let (y, m, d) = civil(i64::try_from(next / 86_400).unwrap());
    (next - now, format!("{y:04}-{m:02}-{d:02}"))
}

/// A refusal by the daily budget of `quota` in `currency`: 403, OpenAI-shaped
/// `budget_exceeded` naming the quota, the currency and the reset, `Retry-After` at the next
/// UTC midnight, no backend tried.
fn assert_budget_refusal(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    quota: &str,
    currency: &str,
) {
    let shown = String::from_utf8_lossy(body);
    assert_eq!(status, 403, "{shown}");
    let error: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {shown}"));
    let error = &error["error"];
    assert_eq!(error["code"], "budget_exceeded", "{error}");
    assert!(
        error["type"].is_string() && error.get("param").is_some(),
        "{error}"
    );
    let message = error["message"].as_str().unwrap();
    let (until, date) = next_utc_midnight();
    for part in [
        format!("`{quota}`"),
        format!("({currency})"),
        format!("resets at {date}T00:00:00Z (UTC)"),
    ] {
        assert!(message.contains(&part), "{part:?} not in {message:?}");
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let retry_after: u64 = header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        retry_after.abs_diff(until) <= 2,
        "Retry-After {retry_after} s, next UTC midnight in {until} s"
    );
    assert_eq!(
        header("x-spillway-attempts"),
        "0",
        "refused before any backend"
    );
}

fn assert_budget_refusal_reply(reply: &Reply, quota: &str, currency: &str) {
    assert_budget_refusal(
        reply.status.as_u16(),
        &reply.headers,
        &reply.body,
        quota,
        currency,
    );
}

/// The exact cost of one burst call in picos, from a gateway with no quota (checked against
/// the simulator's billed tokens).
/// The simulator's billing is deterministic, so every burst call costs the same.
async fn calibrate(sim: &Sim) -> u128 {
    let gw = Gateway::start(&format!("{}{}", chat_pool(sim), aigateway(LOCAL))).await;
    let answer = send(&gw, 0, "calibration", "calibration-1", stream_body()).await;
    assert_eq!(answer.status, 200, "{}", text(&answer));
    let record = records(&gw, &["calibration-1".to_owned()]).await;
    let record = &record["calibration-1"];
    let cost = metered_picos(record);
    let ledger = ledger(sim).await;
    assert_eq!(cost, billed_picos(&ledger["calibration-1"]), "{record}");
    assert_eq!(record["backend"], "east");
    cost
}

/// The numbers of one budget test.
#[derive(Debug)]
struct Numbers {
    /// Nanos one burst call reserves.
    reservation: u64,
    /// Nanos one burst call really costs (as the limiter counts it: rounded up).
    call: u64,
    /// Nanos in the budget.
    budget: u64,
}

/// Sizes the budget at about `RESERVATIONS_IN_BUDGET` reservations, so that what any number
/// of burst calls leave (`budget − k × call`) always has room for a 1-token probe.
fn numbers(call_picos: u128) -> Numbers {
    let reservation = reservation(&stream_body(), DEFAULT_MAX_TOKENS);
    let call = nanos_up(call_picos);
    let probe_min = reservation_of_probe(1);
    let target = RESERVATIONS_IN_BUDGET * reservation + reservation / 2;
    let calls = target / call;
    let budget = (calls * call + probe_min + 50_000).next_multiple_of(1_000);
    assert!(
        budget % call >= probe_min + 50_000,
        "a call of {call} nanos is too cheap for these numbers"
    );
    assert!(
        call * 2 < reservation,
        "each call costs well below its reservation: {call} of {reservation}"
    );
    Numbers {
        reservation,
        call,
        budget,
    }
}

fn reservation_of_probe(max_tokens: u64) -> u64 {
    reservation(&probe_body(max_tokens), max_tokens)
}

/// What the rounds of a burst did.
#[derive(Default)]
struct Burst {
    /// `(gateway, request id)` of every admitted call.
    admitted: Vec<(usize, String)>,
    refused: Vec<String>,
    /// Admitted in the first round (printed: all 50 arrive at once, before any true-up).
    first_round: usize,
    rounds: usize,
    /// Every admitted call's record.
    records: HashMap<String, Value>,
}

impl Burst {
    /// Nanos the limiter counts for the admitted calls: each real cost rounded up.
    fn counted(&self) -> u64 {
        self.records
            .values()
            .map(|r| nanos_up(metered_picos(r)))
            .sum()
    }

    /// The exact real spend, picos.
    fn spent(&self) -> u128 {
        self.records.values().map(metered_picos).sum()
    }
}

/// Rounds of `STREAMS` concurrent streams from app-a, spread over `gateways`, until a round
/// admits nothing (the budget cannot cover one more reservation) — at most 40 rounds and 25 s.
/// Between rounds every admitted call is trued up (its record is written; with `redis`, the
/// shared counter equals the exact sum of the real costs).
async fn burst(gateways: &[Gateway], redis: Option<&RedisServer>) -> Burst {
    let started = Instant::now();
    let mut burst = Burst::default();
    for round in 0..40 {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "the budget was not spent in time"
        );
        let answers: Vec<Answer> = futures_util::future::join_all((0..STREAMS).map(|i| {
            let g = i % gateways.len();
            let id = format!("burst-{round}-{i}");
            async move { send(&gateways[g], g, "app-a", &id, stream_body()).await }
        }))
        .await;
        let mut admitted = Vec::new();
        for answer in answers {
            match answer.status {
                200 => {
                    let body = text(&answer);
                    assert!(body.contains("data: [DONE]"), "a whole stream: {body}");
                    admitted.push((answer.gateway, answer.id));
                }
                403 => {
                    assert_budget_refusal(
                        answer.status,
                        &answer.headers,
                        &answer.body,
                        "spend",
                        "USD",
                    );
                    burst.refused.push(answer.id);
                }
                other => panic!("unexpected {other} for {}: {}", answer.id, text(&answer)),
            }
        }
        burst.rounds = round + 1;
        if round == 0 {
            burst.first_round = admitted.len();
        }
        if admitted.is_empty() {
            return burst;
        }
        for (g, gw) in gateways.iter().enumerate() {
            let ids: Vec<String> = admitted
                .iter()
                .filter(|(at, _)| *at == g)
                .map(|(_, id)| id.clone())
                .collect();
            burst.records.extend(records(gw, &ids).await);
        }
        burst.admitted.extend(admitted);
        if let Some(redis) = redis {
            wait_for_counter(redis, burst.counted()).await;
        }
    }
    panic!("40 rounds did not spend the budget");
}

/// The shared budget counter in Redis (nanos), once written.
async fn budget_counter(redis: &RedisServer) -> Option<i64> {
    let mut conn = redis.connect().await.expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*$USD:d:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() <= 1, "one daily USD budget counter: {keys:?}");
    let key = keys.first()?;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Waits until the Redis counter holds exactly `nanos` (every true-up landed).
async fn wait_for_counter(redis: &RedisServer, nanos: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counter = budget_counter(redis).await;
        if counter == Some(i64::try_from(nanos).unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the shared budget counter holds {counter:?} nanos, the admitted calls cost {nanos}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What every burst shows, whatever the mode: every call was served by east at the
/// calibrated cost, which equals the simulator's billed tokens at east's rates; the spend
/// stays within the budget, and uses most of it; refunds made room for more calls than the
/// budget holds reservations; refused calls never reached a backend.
async fn assert_spent_within_budget(sim: &Sim, burst: &Burst, n: &Numbers) {
    let ledger = ledger(sim).await;
    for (_, id) in &burst.admitted {
        let record = &burst.records[id];
        assert_eq!(record["app_id"], "app-a", "{record}");
        assert_eq!(record["backend"], "east", "{record}");
        let cost = metered_picos(record);
        let entry = ledger
            .get(id)
            .unwrap_or_else(|| panic!("no ledger entry for {id}"));
        assert_eq!(cost, billed_picos(entry), "{record} vs {entry}");
        assert_eq!(
            nanos_up(cost),
            n.call,
            "every burst call costs the same: {record}"
        );
    }
    for id in &burst.refused {
        assert!(!ledger.contains_key(id), "refused {id} reached a backend");
    }
    let spent = burst.spent();
    let budget = u128::from(n.budget) * PICOS_PER_NANO;
    println!(
        "{} rounds: {} admitted ({} in the first round), {} refused; spent {} of {} USD",
        burst.rounds,
        burst.admitted.len(),
        burst.first_round,
        burst.refused.len(),
        decimal(nanos_up(spent)),
        decimal(n.budget)
    );
    assert!(
        spent <= budget,
        "real spend {spent} picos over the budget of {budget}"
    );
    assert!(
        burst.counted() + n.reservation > n.budget,
        "the last round refused everything while {} nanos were left, more than a reservation ({})",
        n.budget - burst.counted(),
        n.reservation
    );
    assert!(!burst.refused.is_empty(), "the budget ran out");
    // Reservations alone would stop at this many calls (the first round admits about that
    // many: its calls are still streaming when the last of them is admitted).
    let without_refunds = n.budget / n.reservation;
    assert!(
        burst.admitted.len() as u64 > without_refunds,
        "true-ups refunded room: {} calls admitted, {without_refunds} reservations fit the budget",
        burst.admitted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_streams_never_overspend_a_daily_budget() {
    let sim = Sim::start(&sim_yaml()).await;
    // Numbers (printed; these from a run): the stream body is 98 bytes, so it reserves 25
    // prompt tokens at $5.00/M plus defaultMaxTokens 100 at $15.00/M (west's rates, the
    // pool's highest) = $0.001625; served by east it really costs 13 prompt tokens at $2.50/M
    // plus 40 completion tokens at $10.00/M = $0.0004325, about a quarter. The budget,
    // $0.03998, holds 24 reservations and is sized to the nano so that a 1-token probe always
    // fits what the burst leaves. Result: 24 admitted in the first round, 89 in 14 rounds,
    // $0.0384925 spent, $0.0014875 left: max_tokens 90 reserves $0.001475 (admitted), 91
    // reserves $0.00149 (refused).
    let n = numbers(calibrate(&sim).await);
    println!(
        "reservation {} USD, real cost {} USD, budget {} USD",
        decimal(n.reservation),
        decimal(n.call),
        decimal(n.budget)
    );
    let gw = Gateway::start(&format!(
        "{}{}{}",
        chat_pool(&sim),
        spend_quota(n.budget),
        aigateway(LOCAL)
    ))
    .await;
    let burst = burst(std::slice::from_ref(&gw), None).await;
    assert_spent_within_budget(&sim, &burst, &n).await;

    // What is left is exact: a call reserving one output token more than fits is refused, the
    // largest that fits is admitted.
    let left = n.budget - burst.counted();
    let fits = (1..=left / CEILING_OUTPUT)
        .take_while(|&m| reservation_of_probe(m) <= left)
        .last()
        .expect("the budget leaves room for a 1-token call");
    assert!(reservation_of_probe(fits + 1) > left);
    println!(
        "left {} USD: max_tokens {fits} reserves {}, {} reserves {}",
        decimal(left),
        decimal(reservation_of_probe(fits)),
        fits + 1,
        decimal(reservation_of_probe(fits + 1))
    );
    let headers = |id| [("x-app-id", "app-a"), ("x-request-id", id)];
    let url = format!("{}/v1/chat/completions", gw.url);
    let over = http(
        Method::POST,
        &url,
        &headers("probe-over"),
        probe_body(fits + 1).to_string(),
    )
    .await;
    assert_budget_refusal_reply(&over, "spend", "USD");
    let within = http(
        Method::POST,
        &url,
        &headers("probe-fits"),
        probe_body(fits).to_string(),
    )
    .await;
    assert_eq!(within.status, 200, "{}", within.text());
    let record = &records(&gw, &["probe-fits".to_owned()]).await["probe-fits"];
    let total = burst.counted() + nanos_up(metered_picos(record));
    assert!(total <= n.budget, "{total} nanos spent of {}", n.budget);
    let ledger = ledger(&sim).await;
    assert!(!ledger.contains_key("probe-over"));
    assert_eq!(
        metered_picos(record),
        billed_picos(&ledger["probe-fits"]),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_share_one_budget_through_redis_and_never_overspend_it() {
    let sim = Sim::start(&sim_yaml()).await;
    let n = numbers(calibrate(&sim).await);
    let redis = RedisServer::start().await;
    let config = format!(
        "{}{}{}",
        chat_pool(&sim),
        spend_quota(n.budget),
        aigateway(&redis_mode(&redis))
    );
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Gateway::start(&config).await);
    }
    let burst = burst(&gateways, Some(&redis)).await;
    assert_spent_within_budget(&sim, &burst, &n).await;
    for g in 0..3 {
        assert!(
            burst.admitted.iter().any(|(at, _)| *at == g),
            "gateway {g} admitted calls from the shared budget"
        );
    }
    // Every app-a record of the three gateways: the served ones are exactly the admitted ones,
    // and their real cost is what the shared counter holds.
    let mut served = 0u128;
    let mut count = 0;
    for gw in &gateways {
        for record in recent(gw).await {
            if record["app_id"] == "app-a" && record["status"] == 200 {
                served += metered_picos(&record);
                count += 1;
            }
        }
    }
    assert_eq!(count, burst.admitted.len());
    assert_eq!(served, burst.spent());
    assert!(served <= u128::from(n.budget) * PICOS_PER_NANO);
    assert_eq!(
        budget_counter(&redis).await,
        Some(i64::try_from(burst.counted()).unwrap())
    );
}

/// Non-streaming calls of `max_tokens: 50`: each reserves ~$0.00057 at $2.50/$10.00 per
/// million and really costs ~$0.00053, so a $0.002 budget covers three of them.
fn small_call(model: &str) -> Value {
    json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": PROMPT}]})
}

async fn call(gw: &Gateway, app: &str, id: &str, body: Value) -> Reply {
    http(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-app-id", app), ("x-request-id", id)],
        body.to_string(),
    )
    .await
}

/// Sends `count` calls; the statuses, and the ids of the admitted ones. Refusals must be
/// USD budget refusals of `quota`.
async fn calls(
    gw: &Gateway,
    app: &str,
    model: &str,
    count: usize,
    quota: &str,
) -> (Vec<u16>, Vec<String>) {
    let mut statuses = Vec::new();
    let mut admitted = Vec::new();
    for i in 0..count {
        let id = format!("{app}-{model}-{i}");
        let reply = call(gw, app, &id, small_call(model)).await;
        match reply.status.as_u16() {
            200 => admitted.push(id),
            403 => assert_budget_refusal_reply(&reply, quota, "USD"),
            other => panic!("unexpected {other}: {}", reply.text()),
        }
        statuses.push(reply.status.as_u16());
    }
    (statuses, admitted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_currencies_unpriced_and_provisioned_pools_do_not_count() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let east = format!("    - {{name: east, url: '{}'}}\n", sim.url("east"));
    let ptu = format!(
        "    - name: ptu\n      url: '{}'\n      pricing: {{provisioned: {{amount: '2.00', per: Hour}}}}\n",
        sim.url("east")
    );
    let rates = "  pricing:\n    currency: USD\n    rates: [{input: '2.50', cachedInput: '1.25', output: '10.00'}]\n";
    let budget = |name: &str, app: &str, currency: &str| {
        quota(
            name,
            &format!(
                "{{appId: {app}, budgets: [{{period: Daily, amount: '0.002', currency: {currency}}}]}}"
            ),
        )
    };
    let config = [
        pool_yaml("chat", &["gpt-4o"], &east, rates),
        format!("---\n{}", pool_yaml("free", &["gpt-4o-mini"], &east, "")),
        format!("---\n{}", pool_yaml("reserved", &["gpt-4.1"], &ptu, rates)),
        budget("euros", "app-a", "EUR"),
        budget("dollars", "app-b", "USD"),
        budget("control", "app-c", "USD"),
        aigateway(LOCAL),
    ]
    .concat();
    let gw = Gateway::start(&config).await;

    // Control: the same calls against the same amount in USD run out within eight.
    let (control, _) = calls(&gw, "app-c", "gpt-4o", 8, "control").await;
    assert_eq!(control[0], 200, "{control:?}");
    assert!(
        control.contains(&403),
        "a $0.002 budget covers fewer than 8 calls: {control:?}"
    );

    // USD-priced calls under a EUR budget: all admitted, though they cost more than 0.002.
    let (euro, euro_ids) = calls(&gw, "app-a", "gpt-4o", 8, "euros").await;
    assert!(euro.iter().all(|s| *s == 200), "{euro:?}");
    let records_a = records(&gw, &euro_ids).await;
    let spent: u128 = records_a.values().map(metered_picos).sum();
    assert!(
        spent > picos("0.002"),
        "the calls would have spent the budget had they counted: {spent} picos"
    );

    // An unpriced pool and a provisioned backend cost nothing under a USD budget …
    let (free, free_ids) = calls(&gw, "app-b", "gpt-4o-mini", 8, "dollars").await;
    assert!(free.iter().all(|s| *s == 200), "{free:?}");
    for record in records(&gw, &free_ids).await.values() {
        assert!(
            record.get("cost").is_none(),
            "an unpriced call has no cost: {record}"
        );
    }
    let (reserved, reserved_ids) = calls(&gw, "app-b", "gpt-4.1", 8, "dollars").await;
    assert!(reserved.iter().all(|s| *s == 200), "{reserved:?}");
    for record in records(&gw, &reserved_ids).await.values() {
        assert_ne!(record["cost"]["kind"], "metered", "{record}");
    }
    // … so app-b's budget is whole: the priced calls run out exactly where the control's did.
    let (priced, _) = calls(&gw, "app-b", "gpt-4o", 8, "dollars").await;
    assert_eq!(priced, control, "app-b's budget was untouched by 16 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_refusal_is_recorded_as_403_and_never_reaches_a_backend() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let east = format!("    - {{name: east, url: '{}'}}\n", sim.url("east"));
    let rates = "  pricing:\n    currency: USD\n    rates: [{input: '2.50', output: '10.00'}]\n";
    let gw = Gateway::start(&format!(
        "{}{}{}",
        pool_yaml("chat", &["gpt-4o"], &east, rates),
        quota(
            "spend",
            "{appId: app-a, budgets: [{period: Daily, amount: '0.001', currency: USD}]}"
        ),
        aigateway(LOCAL)
    ))
    .await;
    let mut refused = None;
    for i in 0..10 {
        let id = format!("refusal-{i}");
        let reply = call(&gw, "app-a", &id, small_call("gpt-4o")).await;
        if reply.status == 403 {
            assert_budget_refusal_reply(&reply, "spend", "USD");
            refused = Some(id);
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let id = refused.expect("a $0.001 budget runs out within ten $0.0005 calls");
    let record = &records(&gw, std::slice::from_ref(&id)).await[&id];
    assert_eq!(record["status"], 403, "{record}");
    assert_eq!(record["app_id"], "app-a", "{record}");
    assert_eq!(record["error_type"], "budget_exceeded", "{record}");
    assert_eq!(record["attempts"], 0, "{record}");
    assert!(record["backend"].is_null(), "{record}");
    assert_eq!(record["upstream"], json!([]), "{record}");
    assert!(
        record.get("cost").is_none(),
        "a refusal costs nothing: {record}"
    );
    let ledger = ledger(&sim).await;
    assert!(!ledger.contains_key(&id), "the refusal reached the backend");
    assert_eq!(
        ledger.len(),
        id.trim_start_matches("refusal-").parse::<usize>().unwrap(),
        "every admitted call, and only those, reached the backend"
    );
}

/// The documented limit — "at most `amount` of metered cost per period … when a budget cannot
/// cover the reservation the call gets 403" — holds for a call that costs more than the whole
/// budget, in both modes: no empty window lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reserving_more_than_the_whole_budget_is_refused() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let east = format!("    - {{name: east, url: '{}'}}\n", sim.url("east"));
    let rates = "  pricing:\n    currency: USD\n    rates: [{input: '2.50', output: '10.00'}]\n";
    // $0.001 budget; the call reserves (and, served, really costs) 200 output tokens at
    // $10.00/M = $0.002 plus its prompt: twice the budget.
    let quota_doc = quota(
        "spend",
        "{appId: app-a, budgets: [{period: Daily, amount: '0.001', currency: USD}]}",
    );
    let pool = pool_yaml("chat", &["gpt-4o"], &east, rates);
    let local = Gateway::start(&format!("{pool}{quota_doc}{}", aigateway(LOCAL))).await;
    let redis = RedisServer::start().await;
    let shared = Gateway::start(&format!(
        "{pool}{quota_doc}{}",
        aigateway(&redis_mode(&redis))
    ))
    .await;
    let mut body = small_call("gpt-4o");
    body["max_tokens"] = json!(200);
    let mut outcomes = Vec::new();
    for (mode, gw) in [("Local", &local), ("Redis", &shared)] {
        let id = format!("whole-budget-{mode}");
        let reply = call(gw, "app-a", &id, body.clone()).await;
        let spent = match reply.status.as_u16() {
            200 => decimal(nanos_up(metered_picos(
                &records(gw, std::slice::from_ref(&id)).await[&id],
            ))),
            _ => "0".to_owned(),
        };
        outcomes.push((mode, reply.status.as_u16(), spent));
    }
    assert!(
        outcomes.iter().all(|(_, status, _)| *status == 403),
        "a $0.001 daily budget admitted a call reserving ~$0.002 (mode, status, USD spent): {outcomes:?}"
    );
}
