//! Shared library of the oc-ambient plugins.
//!
//! Every plugin follows one shape: load a [`snapshot::Snapshot`] of the cluster (live, or offline
//! from YAML dumps), compute findings or a plan from it with pure functions, then render or apply.
//! Keeping I/O at the edges is what lets almost all logic be tested without a cluster, and lets the
//! same checks run on a customer's `oc get -o yaml` dump as on a live cluster.

pub mod app;
pub mod check;
pub mod cli;
pub mod client;
pub mod convert;
pub mod equivalence;
pub mod error;
pub mod kinds;
pub mod live;
pub mod mesh;
pub mod printer;
pub mod snapshot;
