//! Prints the CustomResourceDefinitions as multi-document YAML.
//!
//! `cargo run -p spillway-crds --features k8s --bin crdgen > crds/spillway.dev_crds.yaml`

use kube::CustomResourceExt;
use spillway_crds::v1alpha1::{AiBackendPool, AiGateway};

fn main() -> Result<(), serde_norway::Error> {
    print!("{}", spillway_crds::crd_yaml()?);
    let _ = (AiBackendPool::crd_name(), AiGateway::crd_name());
    Ok(())
}
