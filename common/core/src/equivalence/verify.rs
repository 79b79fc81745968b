//! The verifier: the same representative requests through two configurations, and every
//! difference, classified.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::change::{Change, Refusal, apply_all, apply_all_owned, simulate};
use crate::kinds::Kind;
use crate::parallel;
use crate::snapshot::Snapshot;

use super::authorize::policy_vocabulary;
use super::classes::{SourceSet, Sources, observed_features};
use super::evaluate::{Address, HttpRequest, OUTSIDE_CLIENT, Outcome, Request, Target};
use super::jwt::{TOKEN_HEADER, Token, token_vocabulary};
use super::route::{around_prefix, prefix_boundaries, route_vocabulary};
use super::state::MigrationState;
use super::topology::{ROOT_NAMESPACE, Topology};

/// At most this many values per dimension (methods, paths, header values per header name) enter
/// the cross product of one destination namespace, so the request count stays bounded.
pub const MAX_VALUES_PER_DIMENSION: usize = 8;
/// Methods tried, in order, for the one method no condition mentions.
const SPARE_METHODS: &[&str] = &["DELETE", "PUT", "PATCH", "OPTIONS", "HEAD", "POST", "GET"];
/// A path no route or policy of the suite's inputs names.
pub const UNMATCHED_PATH: &str = "/oc-ambient/unmatched";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Denied before, allowed after: a security regression.
    Loosened,
    /// Allowed before, denied after: an outage.
    Tightened,
    /// Allowed both times, served by other workloads.
    Rerouted,
    /// One configuration sends the request to a host the input does not hold: whether it is
    /// allowed there, and who serves it, cannot be told, so neither loosened nor tightened is.
    Unknown,
}

impl Class {
    pub fn word(self) -> &'static str {
        match self {
            Class::Loosened => "loosened",
            Class::Tightened => "tightened",
            Class::Rerouted => "rerouted",
            Class::Unknown => "unknown",
        }
    }
}

/// One outcome change, for every source of a class (see [`super::classes`]): the request of the
/// representative, evaluated, stands for the same request from each member, whose outcomes are
/// the same (only the explanation names the representative).
#[derive(Debug, Clone)]
pub struct Difference {
    /// The representative's request.
    pub request: Request,
    /// Every source the difference holds for, the representative first; the exhaustive verifier
    /// lists one.
    pub sources: SourceSet,
    pub before: Outcome,
    pub after: Outcome,
    pub class: Class,
    /// A difference the migration intends (see [`classify`]).
    pub expected: bool,
}

impl Difference {
    /// Why it differs, from both outcomes' explanations. Written when asked for, not held: a
    /// large mesh's report has tens of thousands of differences, and their outcomes already hold
    /// the words.
    pub fn explanation(&self) -> String {
        if self.expected {
            format!("{EXPECTED_REASON}. after: {}", self.after.explanation)
        } else {
            format!("before: {}. after: {}", self.before.explanation, self.after.explanation)
        }
    }

    /// How many concrete requests differ: one per source.
    pub fn count(&self) -> usize {
        self.sources.len()
    }

    /// The concrete requests that differ: the representative's request from every source.
    pub fn requests(&self) -> impl Iterator<Item = Request> + '_ {
        self.sources.names().map(|source| Request { source: source.to_string(), ..self.request.clone() })
    }
}

/// The derived form with `explanation` as a field, which [`Difference::explanation`] writes.
impl Serialize for Difference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Difference", 7)?;
        fields.serialize_field("request", &self.request)?;
        fields.serialize_field("sources", &self.sources)?;
        fields.serialize_field("before", &self.before)?;
        fields.serialize_field("after", &self.after)?;
        fields.serialize_field("class", &self.class)?;
        fields.serialize_field("expected", &self.expected)?;
        fields.serialize_field("explanation", &self.explanation())?;
        fields.end()
    }
}

/// The verifier's report; its JSON form is the `AmbientEquivalence` document.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub kind: &'static str,
    /// Representative requests evaluated (each in both configurations).
    pub evaluated: usize,
    /// The concrete requests they stand for, exactly: every source of each class.
    pub requests: usize,
    pub differences: Vec<Difference>,
    /// Objects the evaluation could not use, and other caveats.
    pub notes: Vec<String>,
    /// What the evaluation had to drop: objects whose spec it could not read, policies admission
    /// would reject, changes the API server would refuse. Each is also in the notes; listed here
    /// because a comparison without them proves nothing about them (see [`Self::is_conclusive`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

impl Verification {
    pub fn unexpected(&self) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(|difference| !difference.expected)
    }

    /// True when every difference is intended: the migration keeps every outcome.
    pub fn is_equivalent(&self) -> bool {
        self.unexpected().next().is_none()
    }

    /// True when nothing was dropped from the comparison: only then does "no unexpected
    /// difference" speak for the whole input (issue 16: a `--verify` that drops an invalid
    /// object and says so only in a note must not exit 0).
    pub fn is_conclusive(&self) -> bool {
        self.dropped.is_empty()
    }

    /// Concrete requests whose outcome differs.
    pub fn differing_requests(&self) -> usize {
        self.differences.iter().map(Difference::count).sum()
    }

    /// Concrete requests whose outcome differs unexpectedly.
    pub fn unexpected_requests(&self) -> usize {
        self.unexpected().map(Difference::count).sum()
    }
}

/// Compares `before` (usually the sidecar-era configuration) with `after` on every representative
/// request to destinations in `namespaces` (all namespaces when None): one request per class of
/// sources that the routes and policies in scope treat alike ([`super::classes`]), standing for
/// the same request from every member.
pub fn verify(before: &Snapshot, after: &Snapshot, namespaces: Option<&BTreeSet<String>>) -> Verification {
    run(before, after, namespaces, Partitioning::Classes)
}

/// [`verify`] with every source its own class: every concrete request is evaluated. The
/// reference the class-based verifier is tested against; its cost is sources x destinations.
pub fn verify_exhaustive(before: &Snapshot, after: &Snapshot, namespaces: Option<&BTreeSet<String>>) -> Verification {
    run(before, after, namespaces, Partitioning::EverySource)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitioning {
    Classes,
    EverySource,
}

fn run(
    before: &Snapshot,
    after: &Snapshot,
    namespaces: Option<&BTreeSet<String>>,
    partitioning: Partitioning,
) -> Verification {
    let (after, mut before) = parallel::join(|| Topology::from_snapshot(after), || Topology::from_snapshot(before));
    // A Service that exists only after (a version Service the conversion added) is only a new
    // name for pods in the sidecar era, where policy is enforced at the pod: giving it to the
    // "before" side makes requests to it comparable instead of trivially different.
    for (key, service) in &after.services {
        before.services.entry(key.clone()).or_insert_with(|| service.clone());
    }
    let mut notes: Vec<String> = before.notes.iter().map(|note| format!("before: {note}")).collect();
    notes.extend(after.notes.iter().map(|note| format!("after: {note}")));
    for (side, topology) in [("before", &before), ("after", &after)] {
        for policy in topology.policies() {
            if let Some(reason) = &policy.rejected {
                notes.push(format!(
                    "{side}: AuthorizationPolicy {} enforces nothing: admission rejects it ({reason})",
                    policy.policy.key()
                ));
            }
        }
    }
    let mut dropped: Vec<String> = before.dropped.iter().map(|item| format!("before: {item}")).collect();
    dropped.extend(after.dropped.iter().map(|item| format!("after: {item}")));
    let sources = Sources::new(source_names(&before, &after), &before, &after);
    let mut verification =
        Verification { kind: "AmbientEquivalence", evaluated: 0, requests: 0, differences: Vec::new(), notes, dropped };
    let (targets, one_sided_targets) = targets_by_namespace(&before, &after, namespaces);
    let sides = Sides { before: &before, after: &after, sources: &sources, partitioning };
    let namespaces: Vec<(String, Vec<(Target, bool)>)> = targets.into_iter().collect();
    let mut one_sided_sources = 0;
    for result in parallel::map_in_order(&namespaces, |(namespace, targets)| sides.namespace(namespace, targets)) {
        verification.evaluated += result.evaluated;
        verification.requests += result.requests;
        verification.differences.extend(result.differences);
        verification.notes.extend(result.note);
        one_sided_sources = one_sided_sources.max(result.one_sided_sources);
    }
    if one_sided_sources > 0 || one_sided_targets > 0 {
        verification.notes.push(format!(
            "not compared: requests from {one_sided_sources} sources and to {one_sided_targets} destinations that \
             only one configuration holds (no outcome there to compare with)"
        ));
    }
    verification
}

/// What every destination namespace's evaluation reads, shared by the threads that evaluate
/// them.
struct Sides<'a> {
    before: &'a Topology,
    after: &'a Topology,
    sources: &'a Sources,
    partitioning: Partitioning,
}

/// One destination namespace's part of a [`Verification`].
struct NamespaceResult {
    evaluated: usize,
    requests: usize,
    differences: Vec<Difference>,
    /// Why not every request was evaluated, if so.
    note: Option<String>,
    /// Sources only one configuration holds.
    one_sided_sources: usize,
}

impl Sides<'_> {
    fn namespace(&self, namespace: &str, targets: &[(Target, bool)]) -> NamespaceResult {
        let (before, after, sources) = (self.before, self.after, self.sources);
        let classes = match self.partitioning {
            Partitioning::Classes => sources.partition(&observed_features([before, after], namespace)),
            Partitioning::EverySource => sources.singletons(),
        };
        // A source one configuration does not hold (another namespace's workload in a dump of
        // one namespace, ztunnel once it is installed) has no outcome there to compare: its
        // requests are not outcome changes.
        let (classes, one_sided): (Vec<SourceSet>, Vec<SourceSet>) =
            classes.into_iter().partition(|class| sources.on_both_sides(class));
        let mut result = NamespaceResult {
            evaluated: 0,
            requests: 0,
            differences: Vec::new(),
            note: None,
            one_sided_sources: one_sided.iter().map(SourceSet::len).sum(),
        };
        let vocabulary = HttpVocabulary::new(before, after, namespace);
        let variants = |is_http: bool| if is_http { vocabulary.len() } else { 1 };
        let total = targets.iter().fold(0_usize, |total, (_, is_http)| {
            total.saturating_add(classes.len().saturating_mul(variants(*is_http)))
        });
        let mut sampler = Sampler::new(namespace, total);
        for (target, is_http) in targets {
            let variants = variants(*is_http);
            while let Some(index) = sampler.take_below(classes.len() * variants) {
                let class = &classes[index / variants];
                let request = Request {
                    source: class.representative().to_string(),
                    destination: target.clone(),
                    http: is_http.then(|| vocabulary.variant(index % variants)),
                };
                result.evaluated += 1;
                result.requests += class.len();
                let before_outcome = before.evaluate(&request);
                let after_outcome = after.evaluate(&request);
                if let Some(difference) = classify(request, class.clone(), before_outcome, after_outcome) {
                    result.differences.push(difference);
                }
            }
        }
        if sampler.stride > 1 {
            result.note = Some(format!(
                "namespace {namespace}: {} representative requests exceed the budget of \
                 {MAX_REQUESTS_PER_NAMESPACE}; a deterministic sample of at most that many, about one in {}, was \
                 evaluated",
                sampler.total, sampler.stride
            ));
        }
        result
    }
}

/// Compares `input` as it runs today with `input` after `changes` in `state` (by default the end
/// of the migration of `namespaces`, or of every namespace of the input when empty); requests go
/// to destinations in `namespaces` (all when empty). Changes the API server would refuse are left
/// out and named in the notes. In that state the bypass protections are narrowed as Step 9
/// narrows them ([`crate::convert::narrowed_protections`]): a caller without its sidecar is no
/// longer exempt.
pub fn verify_change(
    input: &Snapshot,
    changes: Vec<Change>,
    namespaces: &[String],
    state: Option<&MigrationState>,
) -> Verification {
    // One copy of the input, changed in place from here on: a copy of a large mesh is hundreds
    // of MiB, and the check judges the whole mesh's conversion this way. The changes' new objects
    // move into it.
    let mut after = input.clone();
    let refused = apply_all_owned(&mut after, changes);
    let scope: BTreeSet<String> = if namespaces.is_empty() {
        crate::kinds::ALL
            .iter()
            .filter(|info| info.namespaced)
            .flat_map(|info| after.all(info.kind))
            .filter_map(|object| object.metadata.namespace.clone())
            .collect()
    } else {
        namespaces.iter().cloned().collect()
    };
    // A dump of a namespace's objects rarely holds the Namespace itself; without its labels the
    // workloads would look outside the mesh. What convert reads is sidecar-era configuration, so
    // such a namespace is taken as injecting sidecars, and the report says so.
    let undescribed: BTreeSet<String> =
        scope.iter().filter(|namespace| input.get(Kind::Namespace, None, namespace).is_none()).cloned().collect();
    let sidecar_era = MigrationState { sidecars: undescribed.clone(), ..MigrationState::default() };
    let to_sidecar_era = sidecar_era.changes(input);
    let before = if to_sidecar_era.is_empty() {
        std::borrow::Cow::Borrowed(input)
    } else {
        std::borrow::Cow::Owned(simulate(input, &to_sidecar_era).snapshot)
    };
    let end = MigrationState::fully_migrated(&after, &scope);
    sidecar_era.apply_in_place(&mut after);
    state.unwrap_or(&end).apply_in_place(&mut after);
    let narrowing: Vec<Change> =
        crate::convert::narrowed_protections(&after).into_iter().map(|object| Change::Apply { object }).collect();
    apply_all(&mut after, &narrowing);
    let mut verification = verify(&before, &after, (!namespaces.is_empty()).then_some(&scope));
    for namespace in undescribed {
        verification.notes.push(format!(
            "namespace {namespace} is not in the input: taken as injecting sidecars before the migration"
        ));
    }
    verification.notes.extend(refused.iter().map(Refusal::to_string));
    verification.dropped.extend(refused.iter().map(Refusal::to_string));
    verification
}

/// Why the one intended kind of difference is intended.
pub const EXPECTED_REASON: &str =
    "expected: pod-address traffic skipped the waypoint; the bypass protection now sends it through it";

/// The class of a difference, if any. Expected is only pod-address traffic that a bypass
/// protection now denies: it has to go through the waypoint, which is the point of the protection.
pub fn classify(request: Request, sources: SourceSet, before: Outcome, after: Outcome) -> Option<Difference> {
    let class = match (before.allowed, after.allowed) {
        _ if before.unknown || after.unknown => {
            if before == after {
                return None;
            }
            Class::Unknown
        }
        (false, true) => Class::Loosened,
        (true, false) => Class::Tightened,
        (true, true) if before.backend != after.backend => Class::Rerouted,
        _ => return None,
    };
    let expected =
        class == Class::Tightened && request.destination.address == Address::Pod && after.denied_by_bypass_protection;
    Some(Difference { request, sources, before, after, class, expected })
}

/// Every source: workloads, ingress gateways, one client outside the mesh, and every principal
/// the policies name without a workload; sorted.
fn source_names(before: &Topology, after: &Topology) -> Vec<String> {
    let mut sources = BTreeSet::new();
    for topology in [before, after] {
        sources.extend(topology.workloads.iter().chain(&topology.ingress_gateways).map(|workload| workload.key()));
    }
    sources.insert(OUTSIDE_CLIENT.to_string());
    sources.extend(named_principals_without_workload(before, after));
    sources.into_iter().collect()
}

/// Every Service port and pod address in scope that both configurations hold, by namespace, with
/// whether it speaks HTTP; and how many only one of them holds (left out: a destination that does
/// not exist on one side has no outcome there to compare).
fn targets_by_namespace(
    before: &Topology,
    after: &Topology,
    namespaces: Option<&BTreeSet<String>>,
) -> (BTreeMap<String, Vec<(Target, bool)>>, usize) {
    let in_scope = move |namespace: &str| namespaces.is_none_or(|scope| scope.contains(namespace));
    let mut targets: BTreeMap<String, BTreeMap<Target, bool>> = BTreeMap::new();
    for topology in [before, after] {
        for service in topology.services.values().filter(|service| in_scope(&service.namespace)) {
            for port in &service.ports {
                let target = Target {
                    address: Address::Service,
                    namespace: service.namespace.clone(),
                    name: service.name.clone(),
                    port: port.port,
                };
                targets.entry(target.namespace.clone()).or_default().insert(target, port.is_http());
                for workload in topology.endpoints(service) {
                    let pod = Target {
                        address: Address::Pod,
                        namespace: workload.namespace.clone(),
                        name: workload.name.clone(),
                        port: port.target_port,
                    };
                    targets.entry(pod.namespace.clone()).or_default().insert(pod, port.is_http());
                }
            }
        }
    }
    let exists = |topology: &Topology, target: &Target| match target.address {
        Address::Service => {
            topology.service(&target.namespace, &target.name).is_some_and(|s| s.port(target.port).is_some())
        }
        Address::Pod => topology.application_workload(&format!("{}/{}", target.namespace, target.name)).is_some(),
    };
    let mut one_sided = 0;
    let targets = targets
        .into_iter()
        .map(|(namespace, targets)| {
            let (both, one): (Vec<_>, Vec<_>) =
                targets.into_iter().partition(|(target, _)| exists(before, target) && exists(after, target));
            one_sided += one.len();
            (namespace, both)
        })
        .collect();
    (targets, one_sided)
}

/// At most this many representative requests to the destinations of one namespace are evaluated.
/// Beyond it (a policy naming thousands of principals, each its own class, and paths and headers
/// multiplying them by variants) a deterministic sample spread over all of them is evaluated
/// instead, and the verification's notes say so: time and memory follow the budget, not the
/// input. Since requests are evaluated per class of sources, the budget applies to
/// representatives: a mesh of thousands of namespaces stays far within it.
pub const MAX_REQUESTS_PER_NAMESPACE: usize = 100_000;

/// Chooses which of a namespace's requests (numbered in the order they are generated, across its
/// targets) are evaluated: all of them within the budget, else gaps drawn from a generator seeded
/// by the namespace's name with a mean of `stride`, so that every dimension is varied and a run is
/// reproducible.
struct Sampler {
    total: usize,
    stride: usize,
    /// Number of the first request of the current target.
    offset: usize,
    /// Number of the next request chosen.
    next: usize,
    taken: usize,
    state: u64,
}

impl Sampler {
    fn new(namespace: &str, total: usize) -> Self {
        // FNV-1a: a seed that does not change between runs or Rust versions.
        let seed = namespace
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
        let stride = total.div_ceil(MAX_REQUESTS_PER_NAMESPACE).max(1);
        let mut sampler = Sampler { total, stride, offset: 0, next: 0, taken: 0, state: seed | 1 };
        sampler.next = sampler.gap() - 1;
        sampler
    }

    /// The next chosen request among the current target's `count`, as an index into them; None
    /// moves on to the next target.
    fn take_below(&mut self, count: usize) -> Option<usize> {
        if self.taken < MAX_REQUESTS_PER_NAMESPACE && self.next < self.offset + count {
            let index = self.next - self.offset;
            self.taken += 1;
            self.next += self.gap();
            return Some(index);
        }
        self.offset += count;
        None
    }

    /// 1 without sampling; else uniform in 1..2*stride (mean `stride`), from xorshift64.
    fn gap(&mut self) -> usize {
        if self.stride == 1 {
            return 1;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let span = (2 * self.stride - 1) as u64;
        1 + (self.state % span) as usize
    }
}

/// Principals the policies name that no workload or gateway of either configuration has (callers
/// from outside the input); each becomes a source, so rules about them are exercised.
fn named_principals_without_workload(before: &Topology, after: &Topology) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    let mut named = BTreeSet::new();
    for topology in [before, after] {
        let clients = topology.workloads().iter().chain(topology.ingress_gateways());
        known.extend(clients.filter_map(|workload| workload.principal()));
        known.extend(topology.waypoints.values().map(|waypoint| topology.principal_of(waypoint)));
        for rule in topology.policies().iter().flat_map(|policy| policy.policy.spec.rules()) {
            for source in rule.from.iter().map(|from| &from.source) {
                named.extend(source.principals.iter().chain(&source.not_principals).cloned());
            }
            for condition in rule.when.iter().filter(|condition| condition.key == "source.principal") {
                named.extend(condition.values.iter().chain(&condition.not_values).cloned());
            }
        }
    }
    named
        .into_iter()
        .filter(|principal| !known.contains(principal) && before.principal_client(principal).is_some())
        .collect()
}

/// The HTTP requests tried against a namespace's destinations: methods x paths x (no header, or
/// one header with one of its values), from both configurations' routes and policies, plus a
/// method and a path that none of them names. Kept as dimensions; [`HttpVocabulary::variant`]
/// builds the request of one index.
struct HttpVocabulary {
    methods: Vec<String>,
    paths: Vec<String>,
    /// None: no header.
    headers: Vec<Option<(String, String)>>,
    /// None: no token (see [`super::jwt`]); just that where nothing in scope validates tokens.
    tokens: Vec<Option<Token>>,
}

impl HttpVocabulary {
    fn new(before: &Topology, after: &Topology, namespace: &str) -> Self {
        let mut methods = vec!["GET".to_string()];
        let mut paths = vec!["/".to_string()];
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut tokens = Vec::new();
        let mut boundaries = Vec::new();
        for topology in [before, after] {
            route_vocabulary(topology, namespace, &mut methods, &mut paths, &mut headers);
            prefix_boundaries(topology, namespace, &mut boundaries);
            let mut policies: Vec<_> = topology.policies_in(namespace).collect();
            if namespace != ROOT_NAMESPACE {
                policies.extend(topology.policies_in(ROOT_NAMESPACE));
            }
            policy_vocabulary(&policies, &mut methods, &mut paths, &mut headers);
            token_vocabulary(topology, namespace, &policies, &mut tokens);
            let policy_paths = policies.iter().flat_map(|policy| policy.policy.spec.rules()).flat_map(|rule| &rule.to);
            for operation in policy_paths.map(|to| &to.operation) {
                let prefixes = operation.paths.iter().chain(&operation.not_paths).filter_map(|p| p.strip_suffix('*'));
                boundaries.extend(prefixes.flat_map(around_prefix));
            }
        }
        let mut unique_tokens: Vec<Token> = Vec::new();
        for token in tokens {
            if !unique_tokens.contains(&token) && unique_tokens.len() < MAX_VALUES_PER_DIMENSION {
                unique_tokens.push(token);
            }
        }
        let mut tokens = vec![None];
        if !unique_tokens.is_empty() {
            tokens.push(Some(Token::Invalid));
            tokens.extend(unique_tokens.into_iter().map(Some));
        }
        let spare = SPARE_METHODS.iter().find(|method| !methods.iter().any(|known| known == *method));
        let mut methods = bounded(methods);
        methods.extend(spare.map(|method| method.to_string()));
        let mut paths = bounded(paths);
        // Boundaries have a budget of their own, so that a namespace's many literal paths do not
        // crowd them out; a path already tried is not tried twice.
        boundaries.retain(|path| !paths.contains(path));
        paths.extend(bounded(boundaries));
        paths.push(UNMATCHED_PATH.to_string());
        let mut header_values = vec![None];
        for (name, values) in headers {
            header_values.extend(bounded(values).into_iter().map(|value| Some((name.clone(), value))));
        }
        HttpVocabulary { methods, paths, headers: header_values, tokens }
    }

    fn len(&self) -> usize {
        self.methods.len() * self.paths.len() * self.headers.len() * self.tokens.len()
    }

    /// Variant `index`, numbered method first, then path, then token, then header.
    fn variant(&self, index: usize) -> HttpRequest {
        let header = &self.headers[index % self.headers.len()];
        let rest = index / self.headers.len();
        let token = &self.tokens[rest % self.tokens.len()];
        let rest = rest / self.tokens.len();
        let mut headers: BTreeMap<String, String> = header.iter().cloned().collect();
        if let Some(token) = token {
            headers.insert(TOKEN_HEADER.to_string(), token.header());
        }
        HttpRequest {
            method: self.methods[rest / self.paths.len()].clone(),
            path: self.paths[rest % self.paths.len()].clone(),
            headers,
        }
    }
}

fn bounded(values: Vec<String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for value in values {
        if !unique.contains(&value) && unique.len() < MAX_VALUES_PER_DIMENSION {
            unique.push(value);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes a sampler chooses over targets of `counts` requests, as (target, index).
    fn draw(total_counts: &[usize]) -> Vec<(usize, usize)> {
        let mut sampler = Sampler::new("shop", total_counts.iter().sum());
        let mut chosen = Vec::new();
        for (target, count) in total_counts.iter().enumerate() {
            while let Some(index) = sampler.take_below(*count) {
                assert!(index < *count);
                chosen.push((target, index));
            }
        }
        chosen
    }

    #[test]
    fn a_namespace_beyond_the_budget_is_sampled_within_it_reproducibly_and_across_targets() {
        let counts = [3 * MAX_REQUESTS_PER_NAMESPACE, 7, 4 * MAX_REQUESTS_PER_NAMESPACE];
        let chosen = draw(&counts);
        assert!(chosen.len() <= MAX_REQUESTS_PER_NAMESPACE && chosen.len() > MAX_REQUESTS_PER_NAMESPACE / 2);
        assert_eq!(chosen, draw(&counts), "the same input gives the same sample");
        assert!(chosen.iter().any(|(target, _)| *target == 2), "the sample reaches the last target");
        let within = [10, 20];
        assert_eq!(draw(&within).len(), 30, "within the budget every request is evaluated");
    }
}
