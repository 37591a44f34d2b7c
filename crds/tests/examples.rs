//! Every example under `examples/` (except the demo, which has its own test) is a set of
//! manifests a user can `kubectl apply` and `spillway run --config`: each file parses with
//! [`spillway_crds::manifest`], and the example as a whole compiles with no problem, its
//! `secretRef`s resolved from the Secrets the example itself ships. The server-side
//! `kubectl apply --dry-run=server` check of the same files is in `tests/k8s/e2e.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use spillway_crds::billing::{CostPeriod, Pricing, TokenType};
use spillway_crds::v1alpha1::SecretSource;
use spillway_crds::{CompileInput, SecretResolver, Snapshot, compile, manifest};

/// The examples this test covers, each with the pools and quotas it must yield.
const EXAMPLES: &[(&str, &[&str], &[&str])] = &[
    ("ptu-spillover", &["gpt-4o"], &[]),
    (
        "per-app-quotas",
        &[],
        &["web-assistant", "report-builder", "default-apps"],
    ),
    ("two-apps", &[], &["support-chat", "nightly-batch"]),
];

/// `name/key` → value, from the `stringData` of an example's Secrets.
struct ExampleSecrets(BTreeMap<String, String>);

impl SecretResolver for ExampleSecrets {
    fn resolve(&self, _namespace: &str, source: &SecretSource) -> Result<String, String> {
        let r = source
            .secret_ref
            .as_ref()
            .ok_or("examples use secretRef only")?;
        self.0
            .get(&format!("{}/{}", r.name, r.key))
            .cloned()
            .ok_or_else(|| format!("no Secret {}/{} in the example", r.name, r.key))
    }
}

fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The example's YAML files, sorted, as (file name, text).
fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The `stringData` of every Secret in `text`.
fn secrets_in(text: &str, into: &mut BTreeMap<String, String>) {
    for document in serde_norway::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document).unwrap();
        if value["kind"] != "Secret" {
            continue;
        }
        let name = value["metadata"]["name"].as_str().unwrap();
        assert!(
            value.get("data").is_none(),
            "example Secrets use readable stringData"
        );
        for (key, v) in value["stringData"].as_object().unwrap() {
            into.insert(format!("{name}/{key}"), v.as_str().unwrap().to_owned());
        }
    }
}

/// Parses and compiles one example; panics with every problem found.
fn compile_example(name: &str) -> (Snapshot, Vec<String>) {
    let dir = example_dir(name);
    let files = yaml_files(&dir);
    assert!(!files.is_empty(), "{name} has YAML files");
    assert!(dir.join("README.md").is_file(), "{name} has a README.md");
    let mut input = CompileInput::default();
    let mut secrets = BTreeMap::new();
    let mut skipped = Vec::new();
    for (file, text) in &files {
        let parsed = manifest::parse(text).unwrap_or_else(|errors| {
            panic!("{name}/{file} does not parse: {errors:?}");
        });
        input.pools.extend(parsed.input.pools);
        input.quotas.extend(parsed.input.quotas);
        if let Some(gateway) = parsed.input.gateway {
            assert!(input.gateway.is_none(), "{name}: one AIGateway");
            input.gateway = Some(gateway);
        }
        skipped.extend(parsed.skipped);
        secrets_in(text, &mut secrets);
    }
    let (snapshot, problems) = compile(&input, &ExampleSecrets(secrets));
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    (snapshot, skipped)
}

#[test]
fn every_example_compiles_without_problems() {
    let mut covered: Vec<String> = EXAMPLES.iter().map(|e| e.0.to_owned()).collect();
    for (name, pools, quotas) in EXAMPLES {
        let (snapshot, _) = compile_example(name);
        let got_pools: Vec<_> = snapshot.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got_pools, *pools, "{name} pools");
        let mut got_quotas: Vec<_> = snapshot.quotas.iter().map(|q| q.name.as_str()).collect();
        let mut want_quotas = quotas.to_vec();
        got_quotas.sort_unstable();
        want_quotas.sort_unstable();
        assert_eq!(got_quotas, want_quotas, "{name} quotas");
    }
    // No example directory is left out of this test.
    let mut on_disk: Vec<String> = std::fs::read_dir(example_dir(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "demo")
        .collect();
    on_disk.sort();
    covered.sort();
    assert_eq!(
        on_disk, covered,
        "examples/ and this test list the same examples"
    );
}

/// The README applies every example to one namespace (`kubectl apply -n ai-apps -f …`): no
/// two examples may hold an object of the same kind and name, or one would overwrite the
/// other's.
#[test]
fn the_examples_can_share_one_namespace() {
    let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
    for (name, _, _) in EXAMPLES {
        for (file, text) in yaml_files(&example_dir(name)) {
            for document in serde_norway::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(document).unwrap();
                let kind = value["kind"].as_str().unwrap_or_default().to_owned();
                let object = value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(other) = seen.insert((kind.clone(), object.clone()), name) {
                    panic!("{kind} {object} of {name}/{file} is also in {other}");
                }
            }
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
}

#[test]
fn ptu_spillover_is_ptu_first_with_paygo_spillover_across_regions() {
    let (snapshot, skipped) = compile_example("ptu-spillover");
    assert_eq!(
        skipped.len(),
        3,
        "the three Secrets are skipped: {skipped:?}"
    );
    let pool = &snapshot.pools[0];
    let by_priority = |p: u32| -> Vec<(&str, u32)> {
        pool.backends
            .iter()
            .filter(|b| b.priority == p)
            .map(|b| (b.name.as_str(), b.weight))
            .collect()
    };
    assert_eq!(by_priority(1), [("ptu-swedencentral", 1)]);
    assert_eq!(
        by_priority(2),
        [("paygo-eastus2", 2), ("paygo-westeurope", 1)]
    );
    for backend in &pool.backends {
        let key = backend.api_key.as_ref().expect("every backend has a key");
        assert!(
            key.expose().contains(&backend.name),
            "{}: its own Secret",
            backend.name
        );
        let throttled = &backend.breaker.rules[0];
        assert_eq!(throttled.status_ranges[0].min, 429);
        assert!(throttled.accept_retry_after, "429s honour Retry-After");
        assert_eq!(throttled.max_retry_after_ms, 120_000);
    }
    assert_eq!(pool.retry.max_attempts, 3, "PTU then both regions");
    let pricing: Vec<_> = pool
        .backends
        .iter()
        .map(|b| b.pricing.as_ref().expect("every backend is priced"))
        .collect();
    assert!(
        pricing.iter().all(|p| p.currency == "USD"),
        "the pool's currency"
    );
    let ptu = pricing[0]
        .provisioned
        .as_ref()
        .expect("the PTU's fixed cost");
    assert_eq!(ptu.per, CostPeriod::Month);
    assert!(pricing[1..].iter().all(|p| p.provisioned.is_none()));
    let input = |p: &Pricing| p.rates_for("gpt-4o", None).map(|r| r.input);
    assert_eq!(input(pricing[1]), input(pricing[0]), "the pool's rates");
    assert!(input(pricing[2]) > input(pricing[1]), "its own rates first");
}

#[test]
fn per_app_quotas_have_named_apps_and_a_default() {
    let (snapshot, _) = compile_example("per-app-quotas");
    let default = snapshot
        .quotas
        .iter()
        .find(|q| q.app_id.is_none())
        .expect("a default quota");
    assert_eq!(default.tokens_per_minute, Some(5000));
    assert_eq!(default.calendar.len(), 2, "daily and monthly");
    assert!(default.token_weights.is_default());
    let web = snapshot
        .quotas
        .iter()
        .find(|q| q.name == "web-assistant")
        .expect("web-assistant");
    assert_eq!(web.token_weights.weight(TokenType::CachedInput), 100_000);
    assert_eq!(web.token_weights.weight(TokenType::Input), 1_000_000);
    let named: Vec<_> = snapshot
        .quotas
        .iter()
        .filter_map(|q| q.app_id.as_deref())
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(
        snapshot
            .quotas
            .iter()
            .all(|q| q.tokens_per_minute.is_some() && q.requests_per_minute.is_some()),
        "TPM and RPM everywhere"
    );
}

#[test]
fn two_apps_have_their_own_keys_and_budgets() {
    let (snapshot, skipped) = compile_example("two-apps");
    assert_eq!(skipped, ["Secret default/app-keys"]);
    let identity = &snapshot.gateway.identity;
    assert!(identity.jwt.is_some(), "Entra ID tokens are accepted");
    assert!(!identity.allow_anonymous, "unknown callers get 401");
    let key_apps: Vec<_> = identity
        .api_keys
        .iter()
        .map(|k| k.app_id.as_str())
        .collect();
    let quota_apps: Vec<_> = snapshot
        .quotas
        .iter()
        .filter_map(|q| q.app_id.as_deref())
        .collect();
    assert_eq!(key_apps.len(), 2);
    for app in &key_apps {
        assert!(quota_apps.contains(app), "{app} has a budget");
    }
    let tpm: Vec<_> = snapshot
        .quotas
        .iter()
        .map(|q| q.tokens_per_minute)
        .collect();
    assert_ne!(tpm[0], tpm[1], "different budgets");
}
