use super::*;
use spillway_sidecar::subscribe::file::{LocalSecrets, load_text};

fn urls() -> BTreeMap<String, String> {
    ["fast-1", "fast-2", "paced-1", "paced-2"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                (*name).to_owned(),
                format!("http://127.0.0.1:{}", 18100 + i),
            )
        })
        .collect()
}

#[test]
fn every_variant_compiles_into_the_snapshot_it_describes() {
    for variant in Variant::ALL {
        let text = manifest(variant, &urls()).expect("all backends known");
        let snapshot = load_text(&text, &LocalSecrets::default())
            .unwrap_or_else(|problems| panic!("{variant:?}: {problems:?}\n{text}"));
        let backends: Vec<usize> = snapshot.pools.iter().map(|p| p.backends.len()).collect();
        let want = if variant == Variant::OneBackend { 1 } else { 2 };
        assert_eq!(backends, vec![want, want], "{variant:?}");
        let quotas = if variant == Variant::NoQuota {
            0
        } else if variant == Variant::NoIdentity {
            1
        } else {
            APPS.len()
        };
        assert_eq!(snapshot.quotas.len(), quotas, "{variant:?}");
        assert!(snapshot.pool_for_model(PACED_MODEL).is_some());
        assert!(snapshot.pool_for_model(FAST_MODEL).is_some());
    }
}

#[test]
fn a_missing_backend_is_an_error() {
    let mut urls = urls();
    urls.remove("paced-2");
    let error = manifest(Variant::AllOn, &urls).expect_err("paced-2 missing");
    assert!(error.to_string().contains("paced-2"), "{error}");
}

#[test]
fn the_simulator_paces_one_delta_per_interval() {
    let yaml = simulator_yaml(Duration::from_millis(20));
    let config = crate::simulate::SimConfig::from_yaml(&yaml).expect("valid");
    let paced: Vec<u32> = config
        .backends
        .iter()
        .map(|b| b.tokens_per_second)
        .collect();
    assert_eq!(paced, vec![0, 0, 50, 50]);
}
