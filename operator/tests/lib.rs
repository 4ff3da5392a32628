//! The operator's tests (one binary): the reconciler against an in-memory API server behind
//! kube's client (tower-test), scenario by scenario; the CRD and every manifest against the
//! real schemas.

mod fake;
mod reconcile;
mod schemas;
