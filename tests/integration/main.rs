//! One integration-test binary (as ripgrep does): every test shares one real control plane
//! (etcd, kube-apiserver, kube-controller-manager; see `oc-ambient-testenv`) and creates its own
//! namespaces, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests may print diagnostics of their own: they are not plugin output, which goes through the printer.
#![allow(clippy::print_stderr)]

mod agreement;
mod support;

mod bundle;
mod callers;
mod check_live;
mod check_offline;
mod check_scenarios;
mod controlplane;
mod convert;
mod corpus;
mod e2e;
mod enable;
mod equivalence;
mod faults;
mod krew;
mod monitoring;
mod plugins;
mod rollback;
mod simulator;
mod sizing;
mod waypoint;
