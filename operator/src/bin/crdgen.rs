//! Prints the Replay CustomResourceDefinition as YAML (`manifests/replay-crd.yaml` is its
//! output: `cargo run -p tapedeck-operator --bin crdgen > operator/manifests/replay-crd.yaml`).

fn main() {
    print!("{}", tapedeck_operator::crd::crd_yaml());
}
