//! The names every part of a mesh install agrees on: the capture manifests here, the operator
//! (`tapedeck-operator`) and the responder it starts. One definition; nothing else spells them.

/// The namespace the collector, its Secrets and the operator live in.
pub const NAMESPACE: &str = "tapedeck";

/// The collector's Service (and StatefulSet, ServiceAccount and `app` label).
pub const COLLECTOR_SERVICE: &str = "tapedeck-collector";
/// The name of the collector Service's gRPC port (`grpc` makes Istio treat it as HTTP/2).
pub const COLLECTOR_GRPC_PORT_NAME: &str = "grpc";
/// The collector's gRPC port: the filters push here.
pub const COLLECTOR_GRPC_PORT: u16 = 9090;
/// The name of the collector Service's Flight SQL port.
pub const COLLECTOR_FLIGHT_PORT_NAME: &str = "http-flight";
/// The collector's Arrow Flight SQL port: `tapedeck sql --collector`, snapshots, the operator.
pub const COLLECTOR_FLIGHT_PORT: u16 = 9091;
/// The name of the collector Service's metrics port.
pub const COLLECTOR_METRICS_PORT_NAME: &str = "http-metrics";
/// The collector's HTTP port (`/metrics`, health).
pub const COLLECTOR_METRICS_PORT: u16 = 9464;

/// The Secret that holds the redaction HMAC key of this install.
pub const REDACTION_SECRET: &str = "tapedeck-redaction";
/// The key of [`REDACTION_SECRET`] whose value is `redaction.hash_key`.
pub const REDACTION_SECRET_KEY: &str = "hash-key";

/// The Secret that holds the collector's bearer token.
pub const COLLECTOR_TOKEN_SECRET: &str = "tapedeck-collector-token";
/// The key of [`COLLECTOR_TOKEN_SECRET`] whose value is the token.
pub const COLLECTOR_TOKEN_SECRET_KEY: &str = "token";

/// The name of the filter's `WasmPlugin` / `EnvoyFilter` in the captured namespace.
pub const CAPTURE_PLUGIN: &str = "tapedeck-capture";

/// The Kubernetes cluster domain the collector's FQDN is built with.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The collector Service's fully qualified name:
/// `tapedeck-collector.tapedeck.svc.cluster.local`.
pub fn collector_fqdn() -> String {
    format!("{COLLECTOR_SERVICE}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}")
}

/// The Envoy cluster Istio gives the collector's gRPC port in every sidecar:
/// `outbound|9090||tapedeck-collector.tapedeck.svc.cluster.local`.
pub fn collector_cluster() -> String {
    format!("outbound|{COLLECTOR_GRPC_PORT}||{}", collector_fqdn())
}

/// The collector's Flight SQL URL inside the cluster.
pub fn collector_flight_url() -> String {
    format!("http://{}:{COLLECTOR_FLIGHT_PORT}", collector_fqdn())
}

/// The collector's HTTP URL inside the cluster (the `http-metrics` port: `/metrics`, the health
/// checks and the snapshot API, [`crate::snapshots`]).
pub fn collector_http_url() -> String {
    format!("http://{}:{COLLECTOR_METRICS_PORT}", collector_fqdn())
}

/// The labels every object of a tapedeck install carries.
pub const PART_OF_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "tapedeck");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_cluster_is_named_as_istio_names_it() {
        assert_eq!(
            collector_cluster(),
            "outbound|9090||tapedeck-collector.tapedeck.svc.cluster.local"
        );
        assert_eq!(
            collector_flight_url(),
            "http://tapedeck-collector.tapedeck.svc.cluster.local:9091"
        );
    }
}
