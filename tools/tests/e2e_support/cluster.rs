//! The Kubernetes side of the end-to-end scenario: the simulators behind the example pool,
//! the example manifests applied with `kubectl` and read back until the operator has accepted
//! them, ServiceAccount tokens the operator must refuse, and the wait until both sidecars
//! run the operator's current snapshot version.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::processes::{Operator, Sidecar};
use super::{NAMESPACE, POOL, TestBed, condition, eventually, replace_each, step};
use crate::common::Sim;

/// Backend keys are the placeholders of `examples/ptu-spillover/secrets.yaml`, so a call only
/// succeeds with the key the operator took from the Secret. The PTU admits 240 tokens per
/// minute (about eight calls), then answers 429 with `retry-after-ms`.
pub const SIM: &str = "backends:
  - {name: ptu-swedencentral, apiKey: replace-with-the-ptu-swedencentral-key, tpm: 240}
  - {name: paygo-eastus2, apiKey: replace-with-the-paygo-eastus2-key}
  - {name: paygo-westeurope, apiKey: replace-with-the-paygo-westeurope-key}
";
pub const BACKENDS: [&str; 3] = ["ptu-swedencentral", "paygo-eastus2", "paygo-westeurope"];
pub const WAIT: Duration = Duration::from_secs(60);

/// The example manifests, with the Azure URLs of the pool replaced by the simulators'.
pub fn manifests(bed: &TestBed, sim: &Sim) -> String {
    let urls: Vec<(String, String)> = BACKENDS
        .iter()
        .map(|b| {
            (
                format!("https://contoso-{b}.openai.azure.com"),
                sim.url(b).to_owned(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = urls.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let pool = replace_each(&bed.example("ptu-spillover/pool.yaml"), &pairs);
    [
        bed.example("ptu-spillover/secrets.yaml"),
        pool,
        bed.example("two-apps/secrets.yaml"),
        bed.example("two-apps/gateway.yaml"),
        bed.example("two-apps/quotas.yaml"),
    ]
    .join("\n---\n")
}

/// `kubectl apply` → every object Accepted, ResolvedRefs and Ready at its generation.
pub async fn apply_and_wait_ready(bed: &TestBed, sim: &Sim) {
    step("kubectl apply the examples; the operator accepts them");
    let out = bed.apply(&manifests(bed, sim));
    assert!(
        out.contains("aibackendpool.spillway.dev/gpt-4o created"),
        "{out}"
    );
    let objects = [
        ("aibackendpool", POOL),
        ("aigateway", "gateway"),
        ("tokenquota", "support-chat"),
        ("tokenquota", "nightly-batch"),
    ];
    for (kind, name) in objects {
        eventually(&format!("{kind}/{name} Ready"), WAIT, || async move {
            let object = bed.get(kind, name).ok_or("not found")?;
            let ready = condition(&object, "Ready");
            let observed = &object["status"]["observedGeneration"];
            (ready == Some(("True".into(), "Published".into()))
                && *observed == object["metadata"]["generation"]
                && condition(&object, "Accepted").is_some_and(|c| c.0 == "True"))
            .then_some(())
            .ok_or_else(|| format!("{}", object["status"]))
        })
        .await;
    }
    let pool = bed.get("aibackendpool", POOL).unwrap();
    assert_eq!(
        condition(&pool, "ResolvedRefs").unwrap().0,
        "True",
        "the Secrets resolved"
    );
    assert_eq!(pool["status"]["backends"], 3);
}

/// Tokens of another audience, or no real token, get 401 and no configuration.
pub async fn invalid_tokens_are_refused(bed: &TestBed, operator: &Operator) {
    step("the operator refuses invalid ServiceAccount tokens with 401");
    let wrong_audience = bed.sidecar_token(None);
    for token in ["not-a-token", wrong_audience.as_str()] {
        let (status, body) = operator.probe("/v1/snapshots/watch", token).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            !body.contains("replace-with"),
            "no keys for a refused caller"
        );
    }
}

/// Both sidecars run the operator's current version and the pool says `2/2`.
pub async fn wait_synced(bed: &TestBed, operator: &Operator, sidecars: &[&Sidecar]) -> u64 {
    let version_sample = format!("spillway_operator_snapshot_version{{scope=\"{NAMESPACE}\"}}");
    let synced_sample =
        format!("spillway_operator_sidecars{{scope=\"{NAMESPACE}\",state=\"synced\"}}");
    let version = eventually("both sidecars report the snapshot version", WAIT, || {
        let (version_sample, synced_sample) = (&version_sample, &synced_sample);
        async move {
            let published = operator.metric(version_sample).await.ok_or("no version")?;
            let mut seen = Vec::new();
            for sidecar in sidecars {
                seen.push(sidecar.version().await);
            }
            let synced = operator.metric(synced_sample).await;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let published = published as u64;
            (seen.iter().all(|v| *v == Some(published)) && synced == Some(2.0))
                .then_some(published)
                .ok_or_else(|| {
                    format!("published {published}, sidecars {seen:?}, synced {synced:?}")
                })
        }
    })
    .await;
    eventually(
        "kubectl get aipool shows Ready and 2/2 synced",
        WAIT,
        || async {
            let table = bed.kubectl(&["get", "aipool", POOL, "-n", NAMESPACE]);
            let row = table.lines().nth(1).unwrap_or("").to_owned();
            let cells: Vec<&str> = row.split_whitespace().collect();
            (cells.first() == Some(&POOL) && cells.contains(&"True") && cells.contains(&"2/2"))
                .then_some(())
                .ok_or(table)
        },
    )
    .await;
    version
}
