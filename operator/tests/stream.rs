//! The config stream end to end: the operator's stream server in-process (fake token
//! reviewer) and real `spillway run --operator …` sidecar processes.

#[allow(dead_code)] // shared with live.rs, which uses more of it
#[path = "stream/support.rs"]
mod support;

use tokio::time::Instant;

use support::{
    OTHER_TOKEN, Operator, Sidecar, TEAM_KEY, TEAM_TOKEN, eventually, http_get, https, snapshot,
};

/// Sidecars of `team` running the current version, and all of them.
fn counts(operator: &Operator) -> (usize, usize) {
    let version = operator.publisher.current("team").map_or(0, |s| s.version);
    let counts = operator.sidecars.counts("team", version, Instant::now());
    (counts.synced, counts.total)
}

fn share(operator: &Operator) -> f64 {
    operator
        .publisher
        .current("team")
        .map_or(0.0, |s| s.quotas[0].share)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_apply_the_snapshot_and_report_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = Operator::start(dir.path(), 0).await;
    operator.publisher.publish("team", snapshot("chat", 1));
    let a = Sidecar::start(&operator, dir.path(), "sidecar-a", TEAM_TOKEN).await;
    let b = Sidecar::start(&operator, dir.path(), "sidecar-b", TEAM_TOKEN).await;

    eventually("both sidecars synced", || async {
        counts(&operator) == (2, 2)
    })
    .await;
    let current = operator.publisher.current("team").expect("published");
    assert!(
        (current.quotas[0].share - 0.5).abs() < f64::EPSILON,
        "two sidecars share the quota"
    );
    for sidecar in [&a, &b] {
        let (status, config) = sidecar.config().await;
        assert_eq!(status, 200);
        assert_eq!(config["version"].as_u64(), Some(current.version));
        assert_eq!(config["pools"][0]["name"], "chat");
        assert!(
            !config.to_string().contains(TEAM_KEY),
            "admin output never shows keys"
        );
        assert_eq!(http_get(&sidecar.admin, "/readyz").await.0, 200);
    }

    // A change reaches both.
    operator.publisher.publish("team", snapshot("chat", 7));
    eventually("the new version is reported", || async {
        counts(&operator) == (2, 2)
    })
    .await;
    for sidecar in [&a, &b] {
        let (_, config) = sidecar.config().await;
        assert_eq!(config["pools"][0]["backends"][0]["weight"], 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_keep_serving_while_the_operator_is_away_and_resync_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Operator::start(&dir.path().join("first"), 0).await;
    let port = first.addr.port();
    first.publisher.publish("team", snapshot("chat", 1));
    for _ in 0..3 {
        // Re-issue a few times so the sidecar holds a version the next process will not have.
        first.publisher.publish("team", snapshot("chat", 2));
        first.publisher.publish("team", snapshot("chat", 1));
    }
    let held = first.publisher.current("team").expect("published").version;
    assert_eq!(held, 7);
    let sidecar = Sidecar::start(&first, dir.path(), "sidecar-a", TEAM_TOKEN).await;
    eventually("the sidecar runs the first operator's version", || async {
        sidecar.version().await == Some(held)
    })
    .await;

    first.stop().await;
    for _ in 0..10 {
        let (status, config) = sidecar.config().await;
        assert_eq!(
            (status, config["version"].as_u64()),
            (200, Some(held)),
            "still serving"
        );
        assert_eq!(http_get(&sidecar.admin, "/readyz").await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A restarted operator numbers from 1 again, with changed content.
    let second = Operator::start(&dir.path().join("second"), port).await;
    std::fs::copy(&second.ca, dir.path().join("first/ca.crt")).expect("rotate the CA file");
    second.publisher.publish("team", snapshot("chat", 9));
    eventually("the sidecar resyncs with the new content", || async {
        sidecar.config().await.1["pools"][0]["backends"][0]["weight"] == 9
    })
    .await;
    let version = sidecar.version().await.expect("serving");
    assert!(
        version > held,
        "versions only increase for the sidecar: {version} > {held}"
    );
    eventually("the restarted operator counts it synced", || async {
        counts(&second) == (1, 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401_and_no_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = Operator::start(dir.path(), 0).await;
    operator.publisher.publish("team", snapshot("chat", 1));
    operator
        .publisher
        .publish("other", spillway_crds::Snapshot::default());

    for token in [None, Some("not-a-valid-token")] {
        let (status, body) = https(&operator, "GET", "/v1/snapshots/watch", token, "").await;
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains(TEAM_KEY) && !body.contains("chat"), "{body}");
        let report = r#"{"sidecar":"probe","version":1}"#;
        let (status, _) = https(&operator, "POST", "/v1/sidecars/report", token, report).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        operator.sidecars.counts("team", 1, Instant::now()).total,
        0,
        "refused callers never count"
    );

    // A valid token of another namespace gets that namespace only.
    let (status, body) = https(
        &operator,
        "GET",
        "/v1/snapshots/watch",
        Some(OTHER_TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""scope":"other""#), "{body}");
    assert!(!body.contains(TEAM_KEY) && !body.contains("chat"), "{body}");
    // The team's own token gets the team's snapshot, keys included (the one place they travel).
    let (_, body) = https(
        &operator,
        "GET",
        "/v1/snapshots/watch",
        Some(TEAM_TOKEN),
        "",
    )
    .await;
    assert!(body.contains(TEAM_KEY), "{body}");

    // An operator watching one namespace refuses the others' sidecars instead of leaving
    // them waiting.
    let narrow = Operator::start_serving(&dir.path().join("narrow"), 0, Some("team")).await;
    let (status, body) = https(&narrow, "GET", "/v1/snapshots/watch", Some(OTHER_TOKEN), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("serves namespace team only"), "{body}");

    // A sidecar with a bad token never gets a configuration.
    let sidecar = Sidecar::start(&operator, dir.path(), "sidecar-x", "stolen-token").await;
    for _ in 0..10 {
        assert_eq!(http_get(&sidecar.admin, "/readyz").await.0, 503);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_shares_are_redivided_when_a_sidecar_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = Operator::start(dir.path(), 0).await;
    operator.publisher.publish("team", snapshot("chat", 1));
    let a = Sidecar::start(&operator, dir.path(), "sidecar-a", TEAM_TOKEN).await;
    let b = Sidecar::start(&operator, dir.path(), "sidecar-b", TEAM_TOKEN).await;
    eventually("both synced on half shares", || async {
        counts(&operator) == (2, 2) && (share(&operator) - 0.5).abs() < f64::EPSILON
    })
    .await;
    let halves = operator
        .publisher
        .current("team")
        .expect("published")
        .version;

    b.kill().await;
    eventually("b stops counting after the grace period", || async {
        counts(&operator) == (1, 1) && (share(&operator) - 1.0).abs() < f64::EPSILON
    })
    .await;
    let whole = operator
        .publisher
        .current("team")
        .expect("published")
        .version;
    assert!(whole > halves, "re-divided in a new version");
    eventually("a runs the whole-quota version", || async {
        a.version().await == Some(whole)
    })
    .await;
}

/// Clients that never finish are not held by the operator's servers: a silent socket is
/// dropped at the TLS handshake deadline; a TLS client whose headers trickle, and an idle
/// keep-alive connection, at the header-read timeout. (The admin port uses the same
/// `ServerLimits`, plus a wait for a silent socket's first bytes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed() {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::ServerName;
    use spillway_operator::limits::ServerLimits;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Whether the peer closed the connection within `within` (anything it sends is read).
    async fn closed_within(mut socket: impl AsyncRead + Unpin, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let operator = Operator::start_limited(dir.path(), limits).await;
    let started = Instant::now();
    let silent = TcpStream::connect(operator.addr).await.expect("connect");
    assert!(closed_within(silent, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "handshake deadline"
    );

    let config = support::client_tls(&operator);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = |addr| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from("127.0.0.1").expect("name");
            connector.connect(name, tcp).await.expect("handshake")
        }
    };

    // Headers one byte every 200 ms never complete within the 1 s timeout.
    let mut trickle = tls(operator.addr).await;
    let started = Instant::now();
    for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\n".iter().take(15) {
        if trickle.write_all(&[*byte]).await.is_err() || trickle.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(closed_within(trickle, Duration::from_secs(4)).await);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "header-read timeout"
    );

    // A complete request, then silence: the idle keep-alive connection is closed.
    let mut idle = tls(operator.addr).await;
    idle.write_all(b"GET /v1/none HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    idle.flush().await.expect("flush");
    assert!(closed_within(idle, Duration::from_secs(4)).await);
}
