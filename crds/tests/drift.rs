//! The checked-in CRD YAML (under `crds/` and `charts/spillway/crds/`) must equal what the Rust
//! types generate. Regenerate with
//! `cargo run -p spillway-crds --features k8s --bin crdgen > crds/spillway.dev_crds.yaml`
//! and copy it to `charts/spillway/crds/`.
#![cfg(feature = "k8s")]

use std::path::Path;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let generated = spillway_crds::crd_yaml().expect("CRDs serialise");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "crds/spillway.dev_crds.yaml",
        "charts/spillway/crds/spillway.dev_crds.yaml",
    ] {
        let checked_in = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{file} is out of date with the Rust types; regenerate it with \
             `cargo run -p spillway-crds --features k8s --bin crdgen > {file}`"
        );
    }
}
