//! One integration-test binary (as ripgrep does): every test shares one real control plane
//! (etcd, kube-apiserver, kube-controller-manager; see `oc-ambient-testenv`) and creates its own
//! namespaces, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod controlplane;
mod convert;
mod equivalence;
mod plugins;
