//! Reconcile against kube-rs' mock API server: what a scope publishes and which status and
//! Events it writes, for create, a bad Secret reference, update, delete, conflicts, a follower
//! replica and a failing API server.

#[path = "controller/harness.rs"]
#[allow(dead_code)] // shared with shared_pools.rs, which uses more of it
mod harness;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::Method;
use kube::runtime::watcher::Event;
use serde_json::Value;
use spillway_operator::controller::{error_policy, reconcile};

use harness::{World, condition, events, gateway, pool, quota, secret, status_patches};

async fn reconcile_ok(world: &World) {
    reconcile(Arc::clone(&world.namespace), Arc::clone(&world.ctx))
        .await
        .expect("reconcile");
}

fn version(world: &World) -> u64 {
    world.snapshot().version
}

fn all_bodies(seen: &[harness::Seen]) -> String {
    seen.iter().map(|s| s.body.to_string()).collect()
}

#[tokio::test]
async fn create_makes_the_pool_ready_and_publishes_it() {
    let mut world = World::new();
    world.put_secret(secret("keys", "east", "sk-east-123"));
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 10));
    reconcile_ok(&world).await;

    let snapshot = world.snapshot();
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.pools.len(), 1);
    let key = snapshot.pools[0].backends[0]
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned());
    assert_eq!(key.as_deref(), Some("sk-east-123"));

    let seen = world.api.take();
    let patches = status_patches(&seen);
    assert_eq!(patches.len(), 1, "{seen:?}");
    let (name, status) = &patches[0];
    assert_eq!(name, "chat");
    assert_eq!(
        seen[0].path,
        "/apis/spillway.dev/v1alpha1/namespaces/team/aibackendpools/chat/status"
    );
    for type_ in ["Accepted", "ResolvedRefs", "Ready"] {
        assert_eq!(
            condition(status, type_)["status"],
            "True",
            "{type_}: {status}"
        );
        assert_eq!(condition(status, type_)["observedGeneration"], 1);
    }
    assert_eq!(condition(status, "Ready")["reason"], "Published");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["models"], "gpt-4o");
    assert_eq!(status["backends"], 1);
    assert_eq!(status["sidecars"], "0/0");
    let published = events(&seen);
    assert_eq!(published.len(), 1);
    let first = &published[0];
    assert_eq!(
        (first.0.as_str(), first.1.as_str(), first.2.as_str()),
        ("chat", "Normal", "Published")
    );
    assert!(
        !all_bodies(&seen).contains("sk-east-123"),
        "the key must never reach status or Events"
    );

    reconcile_ok(&world).await;
    assert!(
        world.api.take().is_empty(),
        "nothing changed: no write, no Event"
    );
    assert_eq!(version(&world), 1);
}

#[tokio::test]
async fn a_missing_secret_leaves_refs_unresolved_with_an_actionable_message() {
    let mut world = World::new();
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 10));
    reconcile_ok(&world).await;

    assert!(world.snapshot().pools.is_empty());
    let seen = world.api.take();
    let patches = status_patches(&seen);
    let status = &patches[0].1;
    assert_eq!(condition(status, "Accepted")["status"], "True", "{status}");
    let refs = condition(status, "ResolvedRefs");
    assert_eq!(refs["status"], "False");
    assert_eq!(refs["reason"], "SecretNotResolved");
    let message = refs["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spec.backends[0].apiKey: Secret team/keys not found"),
        "{message}"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    let warnings = events(&seen);
    assert_eq!(
        (warnings[0].1.as_str(), warnings[0].2.as_str()),
        ("Warning", "SecretNotResolved")
    );
    assert!(
        warnings[0].3.contains("Secret team/keys not found"),
        "{warnings:?}"
    );

    // The Secret appears: the pool becomes ready in a new version.
    world.put_secret(secret("keys", "east", "sk-east"));
    reconcile_ok(&world).await;
    assert_eq!(version(&world), 2);
    let seen = world.api.take();
    assert_eq!(
        condition(&status_patches(&seen)[0].1, "ResolvedRefs")["status"],
        "True"
    );
    assert_eq!(events(&seen)[0].2, "Published");
}

#[tokio::test]
async fn an_update_publishes_a_new_version_and_observes_the_generation() {
    let mut world = World::new();
    world.put_secret(secret("keys", "east", "sk-east"));
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 10));
    reconcile_ok(&world).await;
    world.api.take();

    let updated = pool("chat", &["gpt-4o", "gpt-4o-mini"], "keys", 2, 10);
    world.put_pool(updated);
    reconcile_ok(&world).await;
    let snapshot = world.snapshot();
    assert_eq!(snapshot.version, 2);
    assert_eq!(snapshot.pools[0].models, ["gpt-4o", "gpt-4o-mini"]);
    let seen = world.api.take();
    let status = &status_patches(&seen)[0].1;
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["models"], "gpt-4o,gpt-4o-mini");
    assert_eq!(
        condition(status, "Ready")["message"],
        "served in configuration version 2"
    );
    assert!(events(&seen).is_empty(), "still ready: no Event");
}

#[tokio::test]
async fn a_deleted_pool_leaves_the_snapshot() {
    let mut world = World::new();
    world.put_secret(secret("keys", "east", "sk-east"));
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 20));
    world.put_pool(pool("embed", &["ada"], "keys", 1, 10));
    reconcile_ok(&world).await;
    assert_eq!(world.snapshot().pools.len(), 2);
    world.api.take();

    world
        .pools
        .apply_watcher_event(&Event::Delete(pool("chat", &["gpt-4o"], "keys", 1, 20)));
    reconcile_ok(&world).await;
    let snapshot = world.snapshot();
    assert_eq!(snapshot.version, 2);
    let names: Vec<&str> = snapshot.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["embed"]);
    let seen = world.api.take();
    assert!(
        status_patches(&seen).iter().all(|(name, _)| name != "chat"),
        "no status for a deleted object: {seen:?}"
    );
}

#[tokio::test]
async fn conflicts_are_reported_on_the_newer_object() {
    let mut world = World::new();
    world.put_secret(secret("keys", "east", "sk-east"));
    world.put_pool(pool("old", &["gpt-4o"], "keys", 1, 20));
    world.put_pool(pool("new", &["gpt-4o"], "keys", 1, 10));
    world.put_gateway(gateway("main", 20));
    world.put_gateway(gateway("second", 10));
    world.put_quota(quota("app-quota", 600));
    reconcile_ok(&world).await;

    let patches = status_patches(&world.api.take());
    let status_of = |name: &str| -> Value {
        patches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no status for {name}"))
    };
    assert_eq!(condition(&status_of("old"), "Ready")["status"], "True");
    let newer = status_of("new");
    assert_eq!(condition(&newer, "Accepted")["reason"], "ModelConflict");
    assert!(
        condition(&newer, "Accepted")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("team/old")
    );
    assert_eq!(condition(&status_of("main"), "Ready")["status"], "True");
    assert_eq!(
        condition(&status_of("second"), "Accepted")["reason"],
        "GatewayConflict"
    );
    let quota_status = status_of("app-quota");
    assert_eq!(condition(&quota_status, "Ready")["status"], "True");
    assert!(
        quota_status["conditions"]
            .as_array()
            .is_some_and(|c| c.len() == 2),
        "{quota_status}"
    );
    let snapshot = world.snapshot();
    assert_eq!(snapshot.pools.len(), 1);
    assert_eq!(snapshot.quotas[0].tokens_per_minute, Some(600));
}

#[tokio::test]
async fn a_follower_publishes_but_writes_nothing() {
    let mut world = World::new();
    world.leader.send_replace(false);
    world.put_secret(secret("keys", "east", "sk-east"));
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 10));
    reconcile_ok(&world).await;
    assert_eq!(version(&world), 1);
    assert!(world.api.take().is_empty());
}

#[tokio::test]
async fn a_failed_status_write_backs_off_and_the_snapshot_still_serves() {
    let mut world = World::new();
    world.api.fail_patches.store(true, Ordering::Relaxed);
    world.put_secret(secret("keys", "east", "sk-east"));
    world.put_pool(pool("chat", &["gpt-4o"], "keys", 1, 10));
    let error = reconcile(Arc::clone(&world.namespace), Arc::clone(&world.ctx))
        .await
        .expect_err("the API server fails");
    assert!(
        error.to_string().contains("AIBackendPool team/chat"),
        "{error}"
    );
    assert_eq!(version(&world), 1, "published before the status write");
    let first = error_policy(Arc::clone(&world.namespace), &error, Arc::clone(&world.ctx));
    let second = error_policy(Arc::clone(&world.namespace), &error, Arc::clone(&world.ctx));
    assert_ne!(first, second, "the delay grows");
    assert_eq!(world.ctx.metrics.reconcile_errors.get(), 2);
    let seen = world.api.take();
    assert!(
        seen.iter().all(|s| s.method == Method::PATCH),
        "no Event for a failed write"
    );

    world.api.fail_patches.store(false, Ordering::Relaxed);
    reconcile_ok(&world).await;
    assert_eq!(
        status_patches(&world.api.take()).len(),
        1,
        "written on retry"
    );
}
