//! Shared library of the oc-ambient plugins: the pure core (re-exported) plus everything that
//! touches the world: flags, the client and live loader, offline input, the printer and rendering,
//! errors and exit codes.
//!
//! Every plugin follows one shape: load a [`snapshot::Snapshot`] of the cluster (live, or offline
//! from YAML dumps), compute findings or a plan from it with the core's pure functions, then
//! render or apply. Keeping I/O at the edges is what lets almost all logic be tested without a
//! cluster, and lets the same checks run on a customer's `oc get -o yaml` dump as on a live cluster.

pub use oc_ambient_core::{
    change, check, convert, duration, equivalence, fields, journal, kinds, mesh, model, plan, snapshot,
};

pub mod app;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod complete;
pub mod engine;
pub mod error;
pub mod input;
pub mod live;
pub mod printer;
pub mod render;
