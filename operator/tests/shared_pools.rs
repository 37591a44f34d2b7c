//! Capacity shared across namespaces, at the reconcile level (kube-rs' mock API server): a
//! pool kept in a platform namespace with its key Secret is served in the namespaces it
//! grants (by label selector) with that key, and nowhere else; a namespace's own pool wins a
//! name or model clash and the shared pool's status says so; dropping the label revokes it;
//! a central quota applies in the namespaces it names; an invalid grant is refused.
//! (The same on a real API server with real sidecars: `tools/tests/e2e_shared_pools.rs`.)

#[path = "controller/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;
use spillway_crds::v1alpha1::{AllowedNamespaces, LabelSelector, NamespacesFrom};
use spillway_operator::controller::reconcile;

use harness::{World, condition, pool, quota, secret, status_patches};

const KEY: &str = "platform-ptu-key";

fn namespace(name: &str) -> Arc<Namespace> {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    Arc::new(ns)
}

async fn reconcile_in(world: &World, name: &str) {
    reconcile(namespace(name), Arc::clone(&world.ctx))
        .await
        .expect("reconcile");
}

/// The serialized snapshot `name` serves now (keys included: what its sidecars receive).
fn served(world: &World, name: &str) -> String {
    world
        .ctx
        .publisher
        .current(name)
        .map(|s| serde_json::to_string(&*s).expect("json"))
        .unwrap_or_default()
}

fn in_namespace<K: kube::Resource>(mut object: K, ns: &str) -> K {
    object.meta_mut().namespace = Some(ns.into());
    object
}

fn granted_by_label() -> AllowedNamespaces {
    AllowedNamespaces {
        from: NamespacesFrom::Selector,
        selector: Some(LabelSelector {
            match_labels: [("spillway.dev/ai".to_owned(), "granted".to_owned())].into(),
            ..LabelSelector::default()
        }),
    }
}

fn world() -> World {
    let mut world = World::new();
    world.put_namespace("platform", &[]);
    world.put_namespace("team-a", &[("spillway.dev/ai", "granted")]);
    world.put_namespace("team-c", &[]);
    let mut shared = in_namespace(
        pool("shared-chat", &["gpt-4o"], "ptu-key", 1, 100),
        "platform",
    );
    shared.spec.allowed_namespaces = Some(granted_by_label());
    world.put_pool(shared);
    world.put_secret(in_namespace(secret("ptu-key", "east", KEY), "platform"));
    world
}

#[tokio::test]
async fn a_shared_pool_is_served_where_granted_with_the_platforms_key_and_nowhere_else() {
    let mut world = world();
    for ns in ["platform", "team-a", "team-c"] {
        reconcile_in(&world, ns).await;
    }
    let team_a = served(&world, "team-a");
    assert!(
        team_a.contains("shared-chat") && team_a.contains(KEY),
        "{team_a}"
    );
    assert!(
        team_a.contains(r#""namespace":"team-a""#),
        "the snapshot names its namespace"
    );
    let team_c = served(&world, "team-c");
    assert!(
        !team_c.contains("shared-chat") && !team_c.contains(KEY),
        "{team_c}"
    );

    // The platform's status lists who serves it.
    let patches = status_patches(&world.api.take());
    let (_, status) = patches
        .iter()
        .rev()
        .find(|(name, _)| name == "shared-chat")
        .expect("the shared pool's status");
    assert_eq!(status["shared"], 1, "{status}");
    assert_eq!(status["sharedWith"][0]["namespace"], "team-a");
    assert_eq!(status["sharedWith"][0]["served"], true);
    assert_eq!(condition(status, "Ready")["status"], "True", "{status}");

    // Revoked: the label goes, and so do the pool and its key.
    world.put_namespace("team-a", &[]);
    reconcile_in(&world, "team-a").await;
    let team_a = served(&world, "team-a");
    assert!(
        !team_a.contains("shared-chat") && !team_a.contains(KEY),
        "{team_a}"
    );
}

#[tokio::test]
async fn a_namespaces_own_pool_wins_a_clash_and_the_shared_pools_status_says_so() {
    let mut world = world();
    world.put_namespace("team-b", &[("spillway.dev/ai", "granted")]);
    world.put_pool(in_namespace(
        pool("own", &["gpt-4o"], "team-key", 1, 10),
        "team-b",
    ));
    world.put_secret(in_namespace(
        secret("team-key", "east", "team-b-key"),
        "team-b",
    ));
    reconcile_in(&world, "team-b").await;
    let team_b = served(&world, "team-b");
    assert!(
        team_b.contains("team-b-key") && !team_b.contains(KEY),
        "{team_b}"
    );
    world.api.take();
    reconcile_in(&world, "platform").await;
    let patches = status_patches(&world.api.take());
    let (_, status) = patches
        .iter()
        .find(|(name, _)| name == "shared-chat")
        .expect("status");
    let uses: &Vec<Value> = status["sharedWith"].as_array().expect("sharedWith");
    let b = uses
        .iter()
        .find(|u| u["namespace"] == "team-b")
        .expect("team-b listed");
    assert_eq!(b["served"], false);
    assert!(
        b["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("model `gpt-4o`"),
        "{b}"
    );
}

#[tokio::test]
async fn a_central_quota_applies_in_the_namespaces_it_names() {
    let mut world = world();
    let mut central = in_namespace(quota("central", 600), "platform");
    central.spec.namespaces = Some(AllowedNamespaces {
        from: NamespacesFrom::All,
        selector: None,
    });
    world.put_quota(central);
    reconcile_in(&world, "team-c").await;
    let snapshot = world.ctx.publisher.current("team-c").expect("published");
    assert_eq!(snapshot.quotas.len(), 1, "{:?}", snapshot.quotas);
    assert_eq!(snapshot.quotas[0].id, "platform/central");
}

#[tokio::test]
async fn a_grant_without_its_selector_is_refused_with_the_reason() {
    let mut world = World::new();
    world.put_namespace("team", &[]);
    let mut bad = pool("bad", &["gpt-4o"], "k", 1, 10);
    bad.spec.allowed_namespaces = Some(AllowedNamespaces {
        from: NamespacesFrom::Selector,
        selector: None,
    });
    world.put_pool(bad);
    world.put_secret(secret("k", "east", "v"));
    reconcile_in(&world, "team").await;
    let patches = status_patches(&world.api.take());
    let (_, status) = patches.iter().find(|(n, _)| n == "bad").expect("status");
    let accepted = condition(status, "Accepted");
    assert_eq!(accepted["status"], "False", "{status}");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.allowedNamespaces.selector"),
        "{accepted}"
    );
}
