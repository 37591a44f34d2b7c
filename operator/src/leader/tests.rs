//! Leader election: the pure decision, and electors against an in-memory Lease API served
//! through kube-rs' mock client.

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).expect("valid")
}

fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(at(renewed))),
        ..LeaseSpec::default()
    }
}

#[test]
fn decisions() {
    let now = at(1_000);
    assert_eq!(decide(None, "me", now), Decision::Create);
    assert_eq!(
        decide(Some(&held_by("me", 900)), "me", now),
        Decision::Renew
    );
    assert_eq!(
        decide(Some(&held_by("other", 990)), "me", now),
        Decision::Follow("other".into())
    );
    assert_eq!(
        decide(Some(&held_by("other", 985)), "me", now),
        Decision::Follow("other".into()),
        "exactly at expiry it is still held"
    );
    assert_eq!(
        decide(Some(&held_by("other", 984)), "me", now),
        Decision::TakeOver
    );
    let released = LeaseSpec {
        holder_identity: None,
        ..held_by("x", 999)
    };
    assert_eq!(decide(Some(&released), "me", now), Decision::TakeOver);
    let never_renewed = LeaseSpec {
        renew_time: None,
        ..held_by("other", 0)
    };
    assert_eq!(decide(Some(&never_renewed), "me", now), Decision::TakeOver);
}

/// An in-memory Lease API with optimistic concurrency, as the API server does it.
#[derive(Clone, Default)]
struct LeaseApi {
    lease: std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    /// Answer the next write with 409, as if another replica wrote first.
    conflict_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LeaseApi {
    fn answer(&self, method: &http::Method, body: serde_json::Value) -> (u16, serde_json::Value) {
        let mut stored = self.lease.lock().expect("lock");
        let version = |lease: &serde_json::Value| {
            lease["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0)
        };
        let conflict = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "Conflict", "message": "the object has been modified", "code": 409});
        match *method {
            http::Method::GET => match stored.as_ref() {
                Some(lease) => (200, lease.clone()),
                None => (
                    404,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "NotFound", "message": "not found", "code": 404}),
                ),
            },
            http::Method::POST | http::Method::PUT
                if self
                    .conflict_next
                    .swap(false, std::sync::atomic::Ordering::Relaxed) =>
            {
                (409, conflict)
            }
            http::Method::POST if stored.is_some() => (409, conflict),
            http::Method::PUT if stored.as_ref().map(version) != Some(version(&body)) => {
                (409, conflict)
            }
            http::Method::POST | http::Method::PUT => {
                let mut lease = body;
                let next = stored.as_ref().map_or(1, |l| version(l) + 1);
                lease["metadata"]["resourceVersion"] = serde_json::json!(next.to_string());
                *stored = Some(lease.clone());
                (200, lease)
            }
            _ => (405, conflict),
        }
    }

    fn client(&self) -> Client {
        use http_body_util::BodyExt;
        let (service, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                let (status, answer) = api.answer(&parts.method, body);
                let response = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&answer).expect("json"),
                    ))
                    .expect("response");
                respond.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .expect("lock")
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }
}

fn elector(api: &LeaseApi, identity: &str) -> Elector {
    Elector::new(
        api.client(),
        LeaseConfig {
            namespace: "ops".into(),
            name: "spillway-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        },
    )
}

#[tokio::test]
async fn one_replica_leads_and_hands_over_on_release() {
    let api = LeaseApi::default();
    let (a, b) = (elector(&api, "a"), elector(&api, "b"));
    assert!(
        a.step().await.expect("create"),
        "the first replica creates the Lease"
    );
    assert!(
        !b.step().await.expect("look"),
        "a fresh Lease held by a stays with a"
    );
    assert!(a.step().await.expect("renew"));
    assert_eq!(api.holder().as_deref(), Some("a"));
    a.release().await;
    assert_eq!(api.holder(), None);
    assert!(
        b.step().await.expect("take over"),
        "a released Lease is taken at once"
    );
    assert!(!a.step().await.expect("look"));
    let transitions = api
        .lease
        .lock()
        .expect("lock")
        .as_ref()
        .map(|l| l["spec"]["leaseTransitions"].clone());
    assert_eq!(transitions, Some(serde_json::json!(1)));
}

#[tokio::test]
async fn a_conflicting_write_loses_without_an_error() {
    let api = LeaseApi::default();
    let a = elector(&api, "a");
    api.conflict_next
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!a.step().await.expect("a lost race is not an error"));
    assert!(a.step().await.expect("create"));
    api.conflict_next
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!a.step().await.expect("a lost renewal is not an error"));
}

#[tokio::test(start_paused = true)]
async fn run_publishes_leadership_and_releases_on_shutdown() {
    let api = LeaseApi::default();
    let (leads_tx, mut leads) = watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(elector(&api, "a").run(leads_tx, async {
        let _ = stop_rx.await;
    }));
    leads.wait_for(|l| *l).await.expect("leads");
    assert_eq!(api.holder().as_deref(), Some("a"));
    let _ = stop_tx.send(());
    task.await.expect("run ends");
    assert!(!*leads.borrow(), "no longer leading after shutdown");
    assert_eq!(api.holder(), None, "released for the next replica");
}
