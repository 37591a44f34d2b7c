//! Two operator replicas sharing their sidecars through presence Leases, against kube-rs' mock
//! API server (`tower-test`) holding the Leases in memory: each replica divides quotas by the
//! sidecars of both; when one replica's Lease expires or is withdrawn, the other re-divides.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use spillway_crds::Snapshot;
use spillway_crds::snapshot::QuotaConfig;
use spillway_operator::presence::{LABEL, Presence, PresenceConfig, lease_name};
use spillway_operator::publish::Publisher;
use spillway_operator::sidecars::{Registry, StreamGuard};
use tokio::time::Instant;

/// Leases by name, as an API server would keep them; list, server-side apply and delete.
#[derive(Clone, Default)]
struct LeaseServer {
    leases: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl LeaseServer {
    fn answer(&self, method: &Method, path: &str, query: &str, body: Value) -> (StatusCode, Value) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let name = path
            .strip_prefix("/apis/coordination.k8s.io/v1/namespaces/spillway/leases")
            .map(|rest| rest.trim_start_matches('/').to_owned());
        match (method.clone(), name) {
            (Method::GET, Some(name)) if name.is_empty() => {
                assert!(query.contains("labelSelector"), "lists by label: {query}");
                let items: Vec<Value> = leases
                    .values()
                    .filter(|l| l["metadata"]["labels"][LABEL] == "replica")
                    .cloned()
                    .collect();
                let list = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                    "metadata": {"resourceVersion": "1"}, "items": items});
                (StatusCode::OK, list)
            }
            (Method::PATCH, Some(name)) if !name.is_empty() => {
                assert!(
                    query.contains("fieldManager="),
                    "server-side apply: {query}"
                );
                assert_eq!(body["metadata"]["name"], name.as_str());
                leases.insert(name, body.clone());
                (StatusCode::OK, body)
            }
            (Method::DELETE, Some(name)) if leases.remove(&name).is_some() => (
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "not found", "reason": "NotFound", "code": 404}),
            ),
        }
    }

    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let query = parts.uri.query().unwrap_or_default().to_owned();
                let (status, answer) = server.answer(&parts.method, parts.uri.path(), &query, body);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response");
                respond.send_response(response);
            }
        });
        Client::new(service, "spillway")
    }

    fn names(&self) -> Vec<String> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.keys().cloned().collect()
    }
}

/// One operator replica: its publisher, its registry with one connected sidecar, its presence.
struct Replica {
    publisher: Publisher,
    registry: Registry,
    presence: Presence,
    _stream: StreamGuard,
}

impl Replica {
    fn start(api: &LeaseServer, identity: &str, sidecar: &str) -> Self {
        let publisher = Publisher::new();
        publisher.publish("team", with_quota());
        let registry = Registry::new(publisher.clone(), Duration::from_secs(30));
        let stream = registry.connect("team", sidecar, Instant::now());
        let config = PresenceConfig {
            namespace: "spillway".into(),
            identity: identity.into(),
            interval: Duration::from_secs(5),
            lease_duration: Duration::from_secs(15),
        };
        let presence = Presence::new(api.client(), config, registry.clone());
        Self {
            publisher,
            registry,
            presence,
            _stream: stream,
        }
    }

    fn share(&self) -> f64 {
        self.publisher.current("team").expect("compiled").quotas[0].share
    }

    fn total(&self) -> usize {
        self.registry.counts("team", 0, Instant::now()).total
    }

    async fn observe_in(&self, seconds: i64) {
        let wall = Timestamp::now() + SignedDuration::from_secs(seconds);
        self.presence
            .observe_at(wall, Instant::now())
            .await
            .expect("list Leases");
    }
}

fn with_quota() -> Snapshot {
    Snapshot {
        quotas: vec![QuotaConfig {
            id: "team/q".into(),
            name: "q".into(),
            app_id: Some("app".into()),
            pools: Vec::new(),
            models: Vec::new(),
            tokens_per_minute: Some(6000),
            requests_per_minute: None,
            calendar: Vec::new(),
            default_max_tokens: 100,
            share: 1.0,
            token_weights: Default::default(),
            budgets: Vec::new(),
        }],
        ..Snapshot::default()
    }
}

#[tokio::test]
async fn two_replicas_divide_by_all_sidecars_and_redivide_when_one_goes() {
    let api = LeaseServer::default();
    let one = Replica::start(&api, "operator-1", "sidecar-a");
    let two = Replica::start(&api, "operator-2", "sidecar-b");
    assert!((one.share() - 1.0).abs() < f64::EPSILON, "alone at first");

    for replica in [&one, &two] {
        replica.presence.announce().await.expect("announce");
    }
    assert_eq!(
        api.names(),
        [lease_name("operator-1"), lease_name("operator-2")]
    );
    for replica in [&one, &two] {
        replica.observe_in(0).await;
        assert_eq!(replica.total(), 2);
        assert!(
            (replica.share() - 0.5).abs() < f64::EPSILON,
            "each divides by the sidecars of both replicas"
        );
    }

    // operator-2 stops renewing: 16 s later its Lease has expired for operator-1.
    one.observe_in(16).await;
    assert_eq!(one.total(), 1);
    assert!((one.share() - 1.0).abs() < f64::EPSILON, "re-divided");

    // It comes back, then stops gracefully: its Lease is deleted and counts no more at once.
    two.presence.announce().await.expect("announce");
    one.observe_in(0).await;
    assert!((one.share() - 0.5).abs() < f64::EPSILON);
    two.presence.withdraw().await;
    assert_eq!(api.names(), [lease_name("operator-1")]);
    one.observe_in(0).await;
    assert!((one.share() - 1.0).abs() < f64::EPSILON);
}

#[tokio::test]
async fn a_long_expired_lease_of_a_gone_pod_is_deleted() {
    let api = LeaseServer::default();
    let one = Replica::start(&api, "operator-1", "sidecar-a");
    let old = Replica::start(&api, "operator-old", "sidecar-b");
    old.presence.announce().await.expect("announce");
    one.observe_in(10).await;
    assert_eq!(one.total(), 2);
    one.observe_in(2 * 3600).await;
    assert_eq!(one.total(), 1);
    assert!(api.names().is_empty(), "{:?}", api.names());
}
