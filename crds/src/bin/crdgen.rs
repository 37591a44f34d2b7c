//! Prints the CustomResourceDefinitions as multi-document YAML.
//!
//! `cargo run -p spillway-crds --features k8s --bin crdgen > crds/spillway.dev_crds.yaml`

fn main() -> Result<(), serde_norway::Error> {
    print!("{}", spillway_crds::crd_yaml()?);
    Ok(())
}
