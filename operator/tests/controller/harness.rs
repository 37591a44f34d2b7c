//! A scope's world for reconcile tests: reflector stores filled by hand, and kube-rs' mock API
//! server (`tower-test`) that records every request and answers like the API server would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use spillway_crds::Snapshot;
use spillway_crds::v1alpha1::{
    AiBackendPool, AiBackendPoolSpec, AiGateway, AiGatewaySpec, Backend, SecretKeyRef,
    SecretSource, TokenQuota, TokenQuotaSpec,
};
use spillway_operator::controller::{Context, Stores, WriteLimiter};
use spillway_operator::metrics::Metrics;
use spillway_operator::publish::Publisher;
use spillway_operator::sidecars::Registry;
use tokio::sync::watch;

/// One request the mock API server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

/// The mock API server's log and switches.
#[derive(Clone, Default)]
pub struct ApiServer {
    seen: Arc<Mutex<Vec<Seen>>>,
    pub fail_patches: Arc<AtomicBool>,
}

impl ApiServer {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn answer(&self, method: &Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.split('/').collect();
        if *method == Method::PATCH && path.ends_with("/status") {
            if self.fail_patches.load(Ordering::Relaxed) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500});
                return (StatusCode::INTERNAL_SERVER_ERROR, status);
            }
            // .../namespaces/{ns}/{plural}/{name}/status
            let n = segments.len();
            let object = json!({
                "apiVersion": "spillway.dev/v1alpha1",
                "kind": segments[n - 3],
                "metadata": {"namespace": segments[n - 4], "name": segments[n - 2], "resourceVersion": "99"},
                "spec": {"models": [], "backends": []},
                "status": body["status"],
            });
            return (StatusCode::OK, object);
        }
        if *method == Method::POST && path.ends_with("/events") {
            return (StatusCode::CREATED, body.clone());
        }
        let missing = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404});
        (StatusCode::NOT_FOUND, missing)
    }

    /// A client whose requests this server answers.
    pub fn client(&self) -> Client {
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
                let path = parts.uri.path().to_owned();
                let (status, answer) = server.answer(&parts.method, &path, &body);
                server
                    .seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Seen {
                        method: parts.method,
                        path,
                        body,
                    });
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                    .expect("response");
                respond.send_response(response);
            }
        });
        Client::new(service, "default")
    }
}

fn meta(name: &str, generation: i64, age_seconds: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("team".into()),
        generation: Some(generation),
        resource_version: Some(format!("{generation}")),
        creation_timestamp: Some(Time(
            Timestamp::from_second(1_700_000_000 - age_seconds).expect("time"),
        )),
        ..ObjectMeta::default()
    }
}

/// A pool named `name` serving `models` through one backend whose key is in Secret `secret`.
pub fn pool(name: &str, models: &[&str], secret: &str, generation: i64, age: i64) -> AiBackendPool {
    let mut pool = AiBackendPool::new(
        name,
        AiBackendPoolSpec {
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            backends: vec![Backend {
                name: "east".into(),
                url: "http://127.0.0.1:9".into(),
                priority: 1,
                weight: 1,
                api_key: Some(SecretSource {
                    secret_ref: Some(SecretKeyRef {
                        name: secret.into(),
                        key: "east".into(),
                    }),
                    ..SecretSource::default()
                }),
                ..Backend::default()
            }],
            ..AiBackendPoolSpec::default()
        },
    );
    pool.metadata = meta(name, generation, age);
    pool
}

pub fn quota(name: &str, tokens_per_minute: u64) -> TokenQuota {
    let mut quota = TokenQuota::new(
        name,
        TokenQuotaSpec {
            app_id: Some("app".into()),
            tokens_per_minute: Some(tokens_per_minute),
            ..TokenQuotaSpec::default()
        },
    );
    quota.metadata = meta(name, 1, 10);
    quota
}

pub fn gateway(name: &str, age: i64) -> AiGateway {
    let mut gateway = AiGateway::new(name, AiGatewaySpec::default());
    gateway.metadata = meta(name, 1, age);
    gateway
}

pub fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: meta(name, 1, 100),
        data: Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
        ..Secret::default()
    }
}

fn ready<K>() -> Writer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer
}

/// Stores, their writers, and a reconcile context against the mock API server.
pub struct World {
    pub api: ApiServer,
    pub namespaces: Writer<Namespace>,
    pub pools: Writer<AiBackendPool>,
    pub quotas: Writer<TokenQuota>,
    pub gateways: Writer<AiGateway>,
    pub secrets: Writer<Secret>,
    pub namespace: Arc<Namespace>,
    pub ctx: Arc<Context>,
    pub leader: watch::Sender<bool>,
}

impl World {
    pub fn new() -> Self {
        let api = ApiServer::default();
        let client = api.client();
        let (namespaces, pools, quotas, gateways, secrets) =
            (ready::<Namespace>(), ready(), ready(), ready(), ready());
        let stores = Stores {
            namespaces: namespaces.as_reader(),
            pools: pools.as_reader(),
            quotas: quotas.as_reader(),
            gateways: gateways.as_reader(),
            secrets: secrets.as_reader(),
        };
        let publisher = Publisher::new();
        let sidecars = Registry::new(publisher.clone(), Duration::from_secs(30));
        let (leader, leads) = watch::channel(true);
        let reporter = Reporter {
            controller: "spillway-operator".into(),
            instance: Some("test".into()),
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            stores,
            publisher,
            sidecars,
            leads,
            Recorder::new(client, reporter),
            WriteLimiter::new(Duration::ZERO),
            Arc::new(Metrics::default()),
        ));
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some("team".into());
        Self {
            api,
            namespaces,
            pools,
            quotas,
            gateways,
            secrets,
            namespace: Arc::new(namespace),
            ctx,
            leader,
        }
    }
}

impl World {
    pub fn put_pool(&mut self, pool: AiBackendPool) {
        self.pools.apply_watcher_event(&watcher::Event::Apply(pool));
    }

    pub fn put_quota(&mut self, quota: TokenQuota) {
        self.quotas
            .apply_watcher_event(&watcher::Event::Apply(quota));
    }

    pub fn put_gateway(&mut self, gateway: AiGateway) {
        self.gateways
            .apply_watcher_event(&watcher::Event::Apply(gateway));
    }

    pub fn put_secret(&mut self, secret: Secret) {
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(secret));
    }

    /// Adds or relabels namespace `name`.
    pub fn put_namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.into());
        namespace.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.namespaces
            .apply_watcher_event(&watcher::Event::Apply(namespace));
    }

    /// What the scope serves now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.ctx.publisher.current("team").expect("published")
    }
}

/// The status patches among `seen`, as `(object name, status)`.
pub fn status_patches(seen: &[Seen]) -> Vec<(String, Value)> {
    seen.iter()
        .filter(|s| s.method == Method::PATCH && s.path.ends_with("/status"))
        .map(|s| {
            let name = s.path.rsplit('/').nth(1).unwrap_or_default().to_owned();
            (name, s.body["status"].clone())
        })
        .collect()
}

/// The Events among `seen`, as `(regarding name, type, reason, note)`.
pub fn events(seen: &[Seen]) -> Vec<(String, String, String, String)> {
    seen.iter()
        .filter(|s| s.method == Method::POST && s.path.ends_with("/events"))
        .map(|s| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&s.body["regarding"]["name"]),
                text(&s.body["type"]),
                text(&s.body["reason"]),
                text(&s.body["note"]),
            )
        })
        .collect()
}

/// The condition `type_` of a status.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}
