//! Issue 17's limits, asserted with generous margins: these run in debug builds on a shared
//! machine, where the release figures of BENCHMARKS.md (`--bench convert`) take ten to thirty
//! times longer. Each input here took minutes or exhausted memory before its fix.

// The tests print the figures they measure.
#![allow(clippy::print_stderr)]

use std::time::{Duration, Instant};

use oc_ambient_core::convert::{ConvertOptions, convert};
use oc_ambient_core::equivalence::synthetic::{MeshSize, generate, huge_policy, virtual_service_with_rules};
use oc_ambient_core::equivalence::verify::{MAX_REQUESTS_PER_NAMESPACE, verify_change};
use oc_ambient_core::snapshot::Snapshot;

fn timed<T>(what: &str, limit: Duration, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = run();
    let elapsed = started.elapsed();
    eprintln!("{what}: {:.2} s", elapsed.as_secs_f64());
    assert!(elapsed < limit, "{what} took {elapsed:?}, over {limit:?}");
    result
}

/// One namespace of 400 Services with policies, routes and subsets: the per-policy and
/// per-protection passes were scans of the namespace per Service (cubic in bypass protection).
#[test]
fn a_namespace_of_many_services_converts_in_linear_time() {
    let mesh = generate(MeshSize { namespaces: 1, services: 400, pods: 2 });
    let snapshot = Snapshot::from_objects(mesh.sidecar_era);
    let conversion =
        timed("1x400x2 mesh converted", Duration::from_secs(30), || convert(&snapshot, &ConvertOptions::default()));
    assert!(conversion.is_faithful(), "{}", conversion.report_text());
    // A waypoint, version Services and routes for every third Service, a copy and a protection per policy.
    assert!(conversion.items.len() > 400 * 2, "{} items", conversion.items.len());
}

/// Issue 17, acceptance 3: a VirtualService of 100,000 rules is refused for its size, without the
/// pairwise rule-order check that made it take minutes.
#[test]
fn a_virtual_service_of_100000_rules_is_refused_quickly() {
    let snapshot = Snapshot::from_objects(virtual_service_with_rules(100_000));
    let conversion = timed("100,000-rule VirtualService converted", Duration::from_secs(60), || {
        convert(&snapshot, &ConvertOptions::default())
    });
    let refusal = conversion.unsupported.iter().find(|entry| entry.field == "spec.http");
    assert!(
        refusal.is_some_and(|entry| entry.reason.starts_with("100000 rules; an HTTPRoute holds at most")),
        "{:#?}",
        conversion.unsupported
    );
    assert!(conversion.items.iter().all(|item| item.types.as_ref().is_none_or(|t| t.kind != "HTTPRoute")));
}

/// Issue 17, acceptance 2: a policy of 20,000 principals, 5,000 paths and 200 header conditions is
/// verified within the request budget (sampled, and said so), instead of exhausting memory.
#[test]
fn a_policy_of_20000_principals_verifies_within_the_budget() {
    let snapshot = Snapshot::from_objects(huge_policy(20_000, 5_000, 200));
    let conversion = convert(&snapshot, &ConvertOptions::default());
    let verification = timed("20,000-principal policy verified", Duration::from_secs(120), || {
        verify_change(&snapshot, conversion.changes(), &[], None)
    });
    assert!(verification.evaluated <= MAX_REQUESTS_PER_NAMESPACE, "{}", verification.evaluated);
    assert!(verification.evaluated > MAX_REQUESTS_PER_NAMESPACE / 2, "{}", verification.evaluated);
    assert!(verification.notes.iter().any(|note| note.contains("a deterministic sample")), "{:?}", verification.notes);
    assert_eq!(verification.unexpected().count(), 0, "{:?}", verification.unexpected().next());
}
