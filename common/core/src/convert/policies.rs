//! Rules 3 and 4: selector policies move to the waypoint; ztunnel policies admit the waypoint.
//!
//! **Rule 3.** In ambient, a waypoint enforces only policies attached with `targetRefs`. A
//! selector policy (AuthorizationPolicy, RequestAuthentication, Telemetry, WasmPlugin) in a
//! namespace that uses a waypoint is copied as `<name>-waypoint`, with `targetRefs` to the
//! Services that select the pods of its selector (generated version Services included: clients
//! may call those directly) and everything else unchanged (action, provider, rules, conditions).
//! A namespace-wide policy targets the waypoint Gateway. The scope of a Service is its pods, not
//! the selector's: a Service that also selects other pods widens the policy (a warning), and pods
//! no Service with a cluster IP selects would lose the policy (reported: they need a workload
//! waypoint; a headless Service's clients connect to pod addresses, which no Service waypoint
//! captures). The copy names Service ports where the original named container ports
//! ([`super::ports`]). A CUSTOM policy whose authorizer listens on the pod's loopback is refused:
//! the waypoint is another pod. AUDIT policies are copied but decide nothing, so they get no
//! bypass protection.
//!
//! **Rule 4.** With a waypoint in the path, ztunnel at the destination sees the waypoint's
//! identity (and address), not the client's, in every source test: `principals`, `namespaces`,
//! `serviceAccounts`, `ipBlocks`, their negations and `source.*` conditions. A selector (or
//! namespace-wide) AuthorizationPolicy that ztunnel enforces (no L7 attribute) would then block
//! the waypoint, so it admits exactly the waypoint (see [`admit_waypoint`]): ALLOW rules get a
//! source or a twin rule for it, an allow-nothing baseline a rule for it, DENY rules exempt it by
//! `notPrincipals`. The waypoint is the one of each Service the policy protects (its own
//! `istio.io/use-waypoint`, else its namespace's). The client identity is still checked by the
//! waypoint copy of Rule 3, so nothing is widened. These are emitted as updated copies of the
//! original policies (same name; the source annotation names the policy itself).
//!
//! **Root namespace.** A selector or namespace-wide policy of `istio-system` applies mesh-wide;
//! see [`convert_root_policy`].
//!
//! Selector policies that only a proxy enforces (AuthorizationPolicies with L7 attributes, also
//! namespace-wide ones, and selector RequestAuthentication, Telemetry and WasmPlugin) are listed
//! in `replaces` when converted completely: left in place once the pods leave sidecar mode, an L7 ALLOW becomes deny-all at
//! ztunnel.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube_core::DynamicObject;
use serde_json::{Map, Value, json};

use super::Report;
use super::objects::{Items, generated, invalid_name, is_generated};
use super::scope::{Mesh, Workload, is_headless, service_selector};
use crate::change::ResourceRef;
use crate::equivalence::authorize::istio_match;
use crate::equivalence::topology::{ROOT_NAMESPACE, Service, Topology, read_service};
use crate::kinds::Kind;
use crate::mesh::authz::{Action, AuthorizationPolicySpec, Condition, Rule, Source};
use crate::mesh::{ObjectRef, selector_matches};
use crate::model::waypoint::is_gateway;
use crate::snapshot::Snapshot;

/// Services that get waypoint-enforced AuthorizationPolicies, with those policies' sources.
#[derive(Debug, Default)]
pub struct Enforced {
    /// (namespace, Service name) to the AuthorizationPolicies the waypoint enforces for it.
    pub services: BTreeMap<(String, String), Vec<ObjectRef>>,
    /// Selector policies the waypoint copies supersede.
    pub replaced: Vec<ResourceRef>,
}

/// Kinds whose selector versions move to the waypoint.
const POLICY_KINDS: [Kind; 4] =
    [Kind::AuthorizationPolicy, Kind::RequestAuthentication, Kind::Telemetry, Kind::WasmPlugin];

/// Where a policy applies once it moves to the waypoint.
enum Targets<'a> {
    /// The waypoint Gateway (namespace-wide policy): every Service of the namespace.
    Waypoint(&'a str),
    /// These Services, by name.
    Services(Vec<String>),
}

pub(crate) fn convert_policies(
    mesh: &Mesh,
    version_services: &[DynamicObject],
    out: &mut Items,
    report: &mut Report,
) -> Enforced {
    let mut enforced = Enforced::default();
    let targetable = TargetableServices::new(mesh, version_services);
    for kind in POLICY_KINDS {
        for policy in mesh.snapshot.all(kind) {
            let Some(namespace) = policy.metadata.namespace.as_deref() else {
                report.unsupported(
                    &ObjectRef::of(policy),
                    "metadata.namespace",
                    "the object has no namespace; pass -n NS",
                );
                continue;
            };
            let targeted = || {
                let spec = policy.data.get("spec");
                spec.and_then(|spec| spec.get("targetRefs")).is_some()
                    || spec.and_then(|spec| spec.get("targetRef")).is_some()
            };
            if namespace == ROOT_NAMESPACE && !targeted() {
                if kind == Kind::AuthorizationPolicy && !is_generated(policy) {
                    convert_root_policy(mesh, &targetable, policy, out, report, &mut enforced);
                }
                continue;
            }
            let Some(waypoint) = mesh.waypoint(namespace) else { continue };
            if !mesh.in_scope(namespace) || is_generated(policy) {
                continue;
            }
            let reference = ObjectRef::of(policy);
            let spec = policy.data.get("spec").cloned().unwrap_or_else(|| json!({}));
            let services = targetable.in_namespace(namespace);
            if spec.get("targetRefs").is_some() || spec.get("targetRef").is_some() {
                if kind == Kind::AuthorizationPolicy {
                    note_existing_targets(&spec, namespace, &reference, &mut enforced);
                }
                continue;
            }
            let authz = if kind == Kind::AuthorizationPolicy {
                match crate::mesh::spec::<AuthorizationPolicySpec>(policy) {
                    Ok(authz) => Some(authz),
                    Err(err) => {
                        report.unsupported(&reference, "spec", err);
                        continue;
                    }
                }
            } else {
                None
            };
            if kind == Kind::AuthorizationPolicy {
                let unknown = unknown_authorization_fields(&spec);
                for field in &unknown {
                    report.unsupported(
                        &reference,
                        field.clone(),
                        "not a field of AuthorizationPolicy in Istio 1.27: a copy would carry it (strict validation \
                         rejects it) or lose it (the API server prunes it); what the input meant is unknown",
                    );
                }
                if !unknown.is_empty() {
                    continue;
                }
            }
            let selector = selector_labels(&spec);
            if selector.as_ref().is_some_and(|selector| gateway_policy(mesh, namespace, selector)) {
                continue; // a gateway proxy enforces it, as before
            }
            if let Some(reason) = authz.as_ref().and_then(|authz| pod_local_provider(mesh, authz)) {
                report.unsupported(&reference, "spec.provider", reason);
                continue;
            }
            let proxy_only = authz.as_ref().is_none_or(|authz| !authz.l7_attributes().is_empty());
            let before = report.unsupported_count();
            if selector.is_none() && proxy_only {
                report_uncovered_workloads(mesh, &reference, services, report);
            }
            let targets = match &selector {
                None => Targets::Waypoint(waypoint),
                Some(selector) => {
                    Targets::Services(target_services(mesh, &reference, namespace, selector, services, report))
                }
            };
            let target_refs: Vec<Value> = match &targets {
                Targets::Waypoint(name) => {
                    vec![json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name})]
                }
                Targets::Services(names) => {
                    names.iter().map(|name| json!({"group": "", "kind": "Service", "name": name})).collect()
                }
            };
            let attached: Vec<String> = match &targets {
                Targets::Waypoint(_) => services.services.iter().map(|service| service.name.to_string()).collect(),
                Targets::Services(names) => names.clone(),
            };
            if !target_refs.is_empty() {
                match targetable.waypoint_spec(kind, namespace, &attached, &spec) {
                    Ok(copy) => emit_waypoint_copy(out, report, kind, &reference, namespace, &copy, target_refs),
                    Err(reason) => report.unsupported(&reference, "spec.rules", reason),
                }
            }
            if let Some(authz) = &authz {
                let protected = attached;
                // An AUDIT policy decides nothing: there is nothing for a bypass protection to keep.
                if authz.action != Action::Audit {
                    for service in &protected {
                        let key = (namespace.to_string(), service.clone());
                        enforced.services.entry(key).or_default().push(reference.clone());
                    }
                }
                if !protected.is_empty() {
                    // A Service labelled with its own waypoint reaches the pods through that one.
                    let principals: Option<BTreeSet<String>> =
                        protected.iter().map(|service| mesh.service_waypoint_principal(namespace, service)).collect();
                    admit_waypoint(policy, authz, principals.map(|set| set.into_iter().collect()), out, report);
                }
            }
            // A namespace-wide L7 AuthorizationPolicy is as much a ztunnel trap as a selector one; other
            // namespace-wide kinds may still configure ztunnel and stay.
            let moved = selector.is_some() || kind == Kind::AuthorizationPolicy;
            if proxy_only && moved && report.unsupported_count() == before {
                if authz.as_ref().is_some_and(|authz| authz.action == Action::Deny && authz.has_l7_only_rule()) {
                    report.warn(
                        &reference,
                        "ztunnel silently does not enforce L7-only DENY rules although the policy's status claims \
                         otherwise (istio/istio#61126): apply the waypoint copy before the pods leave sidecar mode",
                    );
                }
                if authz.as_ref().is_some_and(|authz| authz.action == Action::Allow) {
                    report.warn(
                        &reference,
                        "ztunnel treats this L7 ALLOW policy as deny-all once the pods leave sidecar mode: \
                         remove it (see replaces) as soon as they do",
                    );
                }
                enforced.replaced.push(ResourceRef::new(kind, Some(namespace), &reference.name));
            }
        }
    }
    enforced
}

/// A selector or namespace-wide AuthorizationPolicy of the root namespace applies to the workloads
/// of every namespace, enforced by their sidecars or ztunnel; a waypoint enforces only what is
/// attached to it. So each namespace that uses a waypoint gets its own copy, attached to its
/// waypoint (namespace-wide) or to its Services that select the policy's pods, and the policy
/// itself admits every waypoint at ztunnel (Rule 4). It stays: the namespaces without a waypoint
/// still need it. With L7 attributes it cannot stay: ztunnel would enforce it at every ambient pod
/// without them (an ALLOW becomes deny-all), so it is refused.
fn convert_root_policy(
    mesh: &Mesh,
    targetable: &TargetableServices,
    policy: &DynamicObject,
    out: &mut Items,
    report: &mut Report,
    enforced: &mut Enforced,
) {
    let reference = ObjectRef::of(policy);
    let waypoints: Vec<(&str, &str)> = mesh
        .waypoint_namespaces()
        .filter(|namespace| *namespace != ROOT_NAMESPACE && mesh.in_scope(namespace))
        .filter_map(|namespace| Some((namespace, mesh.waypoint(namespace)?)))
        .collect();
    if waypoints.is_empty() {
        return;
    }
    let authz = match crate::mesh::spec::<AuthorizationPolicySpec>(policy) {
        Ok(authz) => authz,
        Err(err) => {
            report.unsupported(&reference, "spec", err);
            return;
        }
    };
    let spec = policy.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let selector = selector_labels(&spec);
    if selector.as_ref().is_some_and(is_gateway) || authz.action == Action::Audit {
        return;
    }
    let attributes = authz.l7_attributes();
    if !attributes.is_empty() || authz.action == Action::Custom {
        let what = if attributes.is_empty() { "CUSTOM action".to_string() } else { attributes.join(", ") };
        report.unsupported(
            &reference,
            "spec",
            format!(
                "a mesh-wide policy (root namespace {ROOT_NAMESPACE}) with {what}: waypoints enforce only policies \
                 attached with targetRefs, and ztunnel enforces this one at the ambient pods of every namespace \
                 without its L7 attributes (an ALLOW becomes deny-all); give each namespace its own copy first"
            ),
        );
        return;
    }
    for (namespace, waypoint) in &waypoints {
        let services = targetable.in_namespace(namespace);
        let (target_refs, protected): (Vec<Value>, Vec<String>) = match &selector {
            None => (
                vec![json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": waypoint})],
                services.services.iter().map(|service| service.name.to_string()).collect(),
            ),
            Some(selector) => {
                if mesh.selected(namespace, selector).next().is_none() {
                    continue;
                }
                let names = target_services(mesh, &reference, namespace, selector, services, report);
                (names.iter().map(|name| json!({"group": "", "kind": "Service", "name": name})).collect(), names)
            }
        };
        if target_refs.is_empty() {
            continue;
        }
        match targetable.waypoint_spec(Kind::AuthorizationPolicy, namespace, &protected, &spec) {
            Ok(copy) => {
                emit_waypoint_copy(out, report, Kind::AuthorizationPolicy, &reference, namespace, &copy, target_refs)
            }
            Err(reason) => report.unsupported(&reference, "spec.rules", reason),
        }
        for service in protected {
            enforced.services.entry((namespace.to_string(), service)).or_default().push(reference.clone());
        }
    }
    let principals: Option<Vec<String>> =
        waypoints.iter().map(|(namespace, _)| mesh.waypoint_principal(namespace)).collect();
    admit_waypoint(policy, &authz, principals, out, report);
}

/// Why a CUSTOM policy's authorizer cannot move to the waypoint: the extension provider the mesh
/// config names for it listens on the loopback address, which only the pod's own containers (the
/// sidecar next to the authorizer) reach; a waypoint is another pod.
fn pod_local_provider(mesh: &Mesh, authz: &AuthorizationPolicySpec) -> Option<String> {
    if authz.action != Action::Custom {
        return None;
    }
    let name = authz.provider.as_ref()?.get("name")?.as_str()?;
    let providers = mesh.snapshot.all(Kind::Istio).iter().flat_map(|istio| {
        istio.data.pointer("/spec/values/meshConfig/extensionProviders").and_then(Value::as_array).into_iter().flatten()
    });
    let service = providers.filter(|provider| provider.get("name").and_then(Value::as_str) == Some(name)).find_map(
        |provider| {
            ["envoyExtAuthzHttp", "envoyExtAuthzGrpc"]
                .iter()
                .find_map(|kind| provider.pointer(&format!("/{kind}/service")).and_then(Value::as_str))
        },
    )?;
    let loopback = service == "localhost" || service.starts_with("127.") || service == "::1" || service == "[::1]";
    loopback.then(|| {
        format!(
            "the CUSTOM provider {name} is {service}, reachable only from inside each pod; the waypoint is another \
             pod and cannot reach it: deploy the authorizer behind a Service and point the provider at it first"
        )
    })
}

/// A Service a policy can target, with its selector decoded once.
#[derive(Clone)]
pub(crate) struct Targetable {
    name: String,
    selector: BTreeMap<String, String>,
}

impl Targetable {
    /// True when the Service selects the pods of `workload` (of the Service's namespace).
    fn selects(&self, workload: &Workload) -> bool {
        selector_matches(&self.selector, &workload.labels)
    }
}

/// The Services policies can target, by namespace: the input's (with a selector) and the
/// generated version Services, sorted by name. Built once: per policy, it was a scan of every
/// Service of the mesh.
struct TargetableServices<'a> {
    /// The input's, built once per [`super::Converter`] ([`input_targetable_services`]).
    input: &'a HashMap<String, NamespaceServices>,
    /// The namespaces that have version Services: the input's with those added.
    with_version_services: HashMap<&'a str, NamespaceServices>,
    /// What a namespace without such Services has.
    none: NamespaceServices,
    /// The evaluator's view of the input, for the Services' ports as the pods see them.
    topology: &'a Topology,
    version_services: &'a [DynamicObject],
}

/// The targetable Services of one namespace, and which of them each selector label starts.
#[derive(Default, Clone)]
pub(crate) struct NamespaceServices {
    services: Vec<Targetable>,
    /// Positions in `services` by the first label of their selector: a workload's Services are
    /// among those its labels start, so finding them does not test every Service.
    by_first_label: HashMap<(String, String), Vec<usize>>,
}

impl NamespaceServices {
    /// The Services that select `workload`, in name order.
    fn selecting(&self, workload: &Workload) -> impl Iterator<Item = &Targetable> {
        let mut positions: Vec<usize> = workload
            .labels
            .iter()
            .filter_map(|(key, value)| self.by_first_label.get(&(key.clone(), value.clone())))
            .flatten()
            .copied()
            .filter(|position| self.services[*position].selects(workload))
            .collect();
        positions.sort_unstable();
        positions.into_iter().map(|position| &self.services[position])
    }

    /// Sorts the Services by name (stable: the input's duplicates keep their order) and indexes
    /// them by first label.
    fn index(&mut self) {
        self.services.sort_by(|a, b| a.name.cmp(&b.name));
        self.by_first_label.clear();
        for (position, service) in self.services.iter().enumerate() {
            if let Some((key, value)) = service.selector.first_key_value() {
                self.by_first_label.entry((key.clone(), value.clone())).or_default().push(position);
            }
        }
    }
}

/// The Service as a policy target: None without a selector, or headless (a headless Service's
/// traffic never passes a Service waypoint).
fn targetable(service: &DynamicObject) -> Option<(&str, Targetable)> {
    let (Some(namespace), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref())
    else {
        return None;
    };
    let selector = service_selector(service);
    let name = name.to_string();
    (!selector.is_empty() && !is_headless(service)).then_some((namespace, Targetable { name, selector }))
}

/// The input's targetable Services by namespace, what every conversion of one input shares.
pub(crate) fn input_targetable_services(snapshot: &Snapshot) -> HashMap<String, NamespaceServices> {
    let mut by_namespace: HashMap<String, NamespaceServices> = HashMap::new();
    for (namespace, service) in snapshot.all(Kind::Service).iter().filter_map(targetable) {
        by_namespace.entry(namespace.to_string()).or_default().services.push(service);
    }
    by_namespace.values_mut().for_each(NamespaceServices::index);
    by_namespace
}

impl<'a> TargetableServices<'a> {
    fn new(mesh: &Mesh<'a>, version_services: &'a [DynamicObject]) -> Self {
        let input = mesh.input_targetable_services();
        let mut with_version_services: HashMap<&'a str, NamespaceServices> = HashMap::new();
        for (namespace, service) in version_services.iter().filter_map(targetable) {
            let services = with_version_services
                .entry(namespace)
                .or_insert_with(|| input.get(namespace).cloned().unwrap_or_default());
            // A version Service the input already holds (by name) is not added twice.
            if !services.services.iter().any(|known| known.name == service.name) {
                services.services.push(service);
            }
        }
        with_version_services.values_mut().for_each(NamespaceServices::index);
        let topology = mesh.topology();
        TargetableServices {
            input,
            with_version_services,
            none: NamespaceServices::default(),
            topology,
            version_services,
        }
    }

    /// The Services `names` of `namespace`, with named target ports resolved against their pods.
    fn resolved(&self, namespace: &str, names: &[String]) -> Vec<Service> {
        let generated = |name: &str| {
            self.version_services.iter().find(|service| {
                service.metadata.namespace.as_deref() == Some(namespace)
                    && service.metadata.name.as_deref() == Some(name)
            })
        };
        let resolve = |name: &String| {
            self.topology.service(namespace, name).cloned().or_else(|| {
                let mut service = read_service(generated(name)?);
                self.topology.resolve_target_ports(&mut service);
                Some(service)
            })
        };
        names.iter().filter_map(resolve).collect()
    }

    /// The spec of the waypoint copy of an AuthorizationPolicy attached to the Services `names`:
    /// its ports become theirs ([`super::ports`]).
    fn waypoint_spec(&self, kind: Kind, namespace: &str, names: &[String], spec: &Value) -> Result<Value, String> {
        let mut spec = spec.clone();
        if kind == Kind::AuthorizationPolicy {
            super::ports::to_service_ports(&mut spec, &self.resolved(namespace, names))?;
        }
        Ok(spec)
    }

    fn in_namespace(&self, namespace: &str) -> &NamespaceServices {
        let with_version_services = self.with_version_services.get(namespace);
        with_version_services.or_else(|| self.input.get(namespace)).unwrap_or(&self.none)
    }
}

/// `spec.selector.matchLabels`; None for a namespace-wide policy (no or an empty selector).
/// The fields of an AuthorizationPolicy spec (Istio 1.27's schema), by level.
const SPEC_FIELDS: &[&str] = &["selector", "targetRef", "targetRefs", "rules", "action", "provider"];
const RULE_FIELDS: &[&str] = &["from", "to", "when"];
const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
];
const OPERATION_FIELDS: &[&str] =
    &["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"];
const CONDITION_FIELDS: &[&str] = &["key", "values", "notValues"];

/// Paths of the fields of an AuthorizationPolicy spec that its schema does not have (issue 16:
/// dropping a field is never "converted faithfully", and copying it emits an invalid object).
fn unknown_authorization_fields(spec: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut check = |value: &Value, known: &[&str], path: &str| {
        for key in value.as_object().into_iter().flat_map(|fields| fields.keys()) {
            if !known.contains(&key.as_str()) {
                unknown.push(format!("{path}.{key}"));
            }
        }
    };
    check(spec, SPEC_FIELDS, "spec");
    let list = |value: &Value, key: &str| value.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    for (r, rule) in list(spec, "rules").iter().enumerate() {
        let path = format!("spec.rules[{r}]");
        check(rule, RULE_FIELDS, &path);
        for (f, from) in list(rule, "from").iter().enumerate() {
            check(from, &["source"], &format!("{path}.from[{f}]"));
            check(&from["source"], SOURCE_FIELDS, &format!("{path}.from[{f}].source"));
        }
        for (t, to) in list(rule, "to").iter().enumerate() {
            check(to, &["operation"], &format!("{path}.to[{t}]"));
            check(&to["operation"], OPERATION_FIELDS, &format!("{path}.to[{t}].operation"));
        }
        for (w, condition) in list(rule, "when").iter().enumerate() {
            check(condition, CONDITION_FIELDS, &format!("{path}.when[{w}]"));
        }
    }
    unknown
}

fn selector_labels(spec: &Value) -> Option<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = spec
        .pointer("/selector/matchLabels")
        .and_then(Value::as_object)?
        .iter()
        .filter_map(|(key, value)| value.as_str().map(|value| (key.clone(), value.to_string())))
        .collect();
    (!labels.is_empty()).then_some(labels)
}

/// True when the selector picks gateway pods only (by its labels, or by the pods it selects).
/// Gateways are proxies: they keep enforcing selector policies themselves, so these stay.
fn gateway_policy(mesh: &Mesh, namespace: &str, selector: &BTreeMap<String, String>) -> bool {
    let mut selected = mesh.selected(namespace, selector).peekable();
    is_gateway(selector) || (selected.peek().is_some() && selected.all(|w| is_gateway(&w.labels)))
}

/// A namespace-wide policy only a proxy enforces reaches, at the waypoint, only pods behind a
/// Service: the others lose it.
fn report_uncovered_workloads(mesh: &Mesh, policy: &ObjectRef, services: &NamespaceServices, report: &mut Report) {
    let namespace = policy.namespace.as_deref().unwrap_or_default();
    for workload in mesh.workloads_in(namespace).filter(|w| !is_gateway(&w.labels)) {
        if services.selecting(workload).next().is_none() {
            report.unsupported(
                policy,
                "spec",
                format!(
                    "{} is selected by no Service with a cluster IP (a headless Service's clients reach the pods directly): the waypoint cannot enforce this namespace-wide policy for it \
                     (it needs a workload waypoint, istio.io/waypoint-for: workload)",
                    workload.source.clone()
                ),
            );
        }
    }
}

/// The Services that select the pods of `selector`, reporting pods without a Service and warning
/// about Services that also select other pods.
fn target_services(
    mesh: &Mesh,
    policy: &ObjectRef,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    services: &NamespaceServices,
    report: &mut Report,
) -> Vec<String> {
    let selected: Vec<&Workload> = mesh.selected(namespace, selector).collect();
    if selected.is_empty() {
        report.unsupported(
            policy,
            "spec.selector",
            "selects no workload of the input, so the Services to target are unknown (include the Deployments or Pods)",
        );
        return Vec::new();
    }
    let mut targets: BTreeMap<&str, &Targetable> = BTreeMap::new();
    for workload in &selected {
        let mut covered = false;
        for service in services.selecting(workload) {
            covered = true;
            targets.insert(&service.name, service);
        }
        if !covered {
            report.unsupported(
                policy,
                "spec.selector",
                format!(
                    "{} is selected by no Service with a cluster IP (a headless Service's clients reach the pods directly): a waypoint cannot enforce this policy for it (it needs a \
                     workload waypoint, istio.io/waypoint-for: workload)",
                    workload.source.clone()
                ),
            );
        }
    }
    for service in targets.values() {
        for other in mesh.selected(namespace, &service.selector).filter(|w| !selector_matches(selector, &w.labels)) {
            report.warn(
                policy,
                format!(
                    "Service {} also selects {}, which the policy's selector did not: at the waypoint the policy \
                     applies to all traffic to the Service, a wider scope",
                    service.name,
                    other.source.clone()
                ),
            );
        }
    }
    targets.into_keys().map(str::to_string).collect()
}

fn emit_waypoint_copy(
    out: &mut Items,
    report: &mut Report,
    kind: Kind,
    source: &ObjectRef,
    namespace: &str,
    spec: &Value,
    target_refs: Vec<Value>,
) {
    let name = format!("{}-waypoint", source.name);
    if let Some(reason) = invalid_name(&name, false).or_else(|| out.name_taken(kind, namespace, &name)) {
        report.unsupported(source, "metadata.name", reason);
        return;
    }
    let mut copy = spec.as_object().cloned().unwrap_or_default();
    copy.remove("selector");
    copy.insert("targetRefs".into(), Value::Array(target_refs));
    let mut body = Map::new();
    body.insert("spec".into(), Value::Object(copy));
    out.add(generated(kind, namespace, &name, std::slice::from_ref(source), body), report);
}

/// An input policy that already uses targetRefs: the Services it targets are waypoint-enforced.
fn note_existing_targets(spec: &Value, namespace: &str, policy: &ObjectRef, enforced: &mut Enforced) {
    let refs = spec.get("targetRefs").and_then(Value::as_array).cloned().unwrap_or_default();
    for target in refs.iter().chain(spec.get("targetRef")) {
        if target.get("kind").and_then(Value::as_str) == Some("Service")
            && let Some(name) = target.get("name").and_then(Value::as_str)
        {
            let key = (namespace.to_string(), name.to_string());
            enforced.services.entry(key).or_default().push(policy.clone());
        }
    }
}

/// Rule 4 (module docs): the ztunnel-enforced policy must let the waypoints through.
///
/// Every place a rule tests the source counts, not only `from.principals`: ztunnel sees the
/// waypoint's principal, namespace, service account and address in `principals`, `namespaces`,
/// `serviceAccounts`, `ipBlocks` and their negations, and in `when` conditions on `source.*` and
/// `remote.ip`. An ALLOW rule that tests the source only in `from` gets a source naming the
/// waypoint (sources are ORed); one that tests it in `when` (ANDed with everything) gets a twin
/// rule for the waypoint with the same operations and its other conditions; an ALLOW without rules
/// (the allow-nothing baseline) gets one rule admitting the waypoint. A DENY rule that may match
/// the waypoint gets it in `notPrincipals` of each source that may (the fields of a source are
/// ANDed, so this exempts exactly the waypoint, never its namespace), or a source exempting it when
/// the rule tests the source only in `when`. The client is still checked by the waypoint copy.
fn admit_waypoint(
    policy: &DynamicObject,
    authz: &AuthorizationPolicySpec,
    waypoints: Option<Vec<String>>,
    out: &mut Items,
    report: &mut Report,
) {
    if !authz.l7_attributes().is_empty() || !matches!(authz.action, Action::Allow | Action::Deny) {
        return;
    }
    let reference = ObjectRef::of(policy);
    let namespace = reference.namespace.clone().unwrap_or_default();
    let peers: Option<Vec<Peer>> = waypoints.map(|principals| principals.into_iter().filter_map(Peer::new).collect());
    let Some(peers) = peers.filter(|peers| !peers.is_empty()) else {
        if !authz.rules().iter().any(tests_source) && authz.rules.as_ref().is_some_and(|rules| !rules.is_empty()) {
            return;
        }
        report.unsupported(
            &reference,
            "spec.rules",
            "ztunnel will see the waypoint's identity, but the waypoint principal is unknown (trust domain); \
             pass --trust-domain",
        );
        return;
    };
    let mut spec = policy.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let changed = match authz.action {
        Action::Allow => admit_in_allow(authz, &peers, &mut spec),
        _ => exempt_in_deny(authz, &peers, &mut spec),
    };
    if !changed {
        return;
    }
    let mut body = Map::new();
    body.insert("spec".into(), spec);
    let name = reference.name.clone();
    out.add(generated(Kind::AuthorizationPolicy, &namespace, &name, std::slice::from_ref(&reference), body), report);
}

/// Condition keys that test the source of a connection, which ztunnel sees as the waypoint.
const SOURCE_CONDITION_KEYS: [&str; 4] = ["source.principal", "source.namespace", "source.ip", "remote.ip"];

fn is_source_condition(condition: &Condition) -> bool {
    SOURCE_CONDITION_KEYS.contains(&condition.key.as_str())
}

fn tests_source(rule: &Rule) -> bool {
    !rule.from.is_empty() || rule.when.iter().any(is_source_condition)
}

/// A waypoint as ztunnel sees it: its principal, namespace and `namespace/serviceaccount`.
struct Peer {
    principal: String,
    namespace: String,
    service_account: String,
}

impl Peer {
    fn new(principal: String) -> Option<Peer> {
        let (_, rest) = principal.split_once("/ns/")?;
        let (namespace, account) = rest.split_once("/sa/")?;
        let (namespace, service_account) = (namespace.to_string(), format!("{namespace}/{account}"));
        Some(Peer { principal, namespace, service_account })
    }

    /// Whether `source` matches this peer. Its address is unknown: `unknown_address` is the answer
    /// for a source that tests addresses (false to admit for sure, true to exempt for sure).
    fn matches_source(&self, source: &Source, unknown_address: bool) -> bool {
        let addresses =
            [&source.ip_blocks, &source.not_ip_blocks, &source.remote_ip_blocks, &source.not_remote_ip_blocks];
        field_matches(&source.principals, &source.not_principals, &self.principal)
            && field_matches(&source.namespaces, &source.not_namespaces, &self.namespace)
            && field_matches(&source.service_accounts, &source.not_service_accounts, &self.service_account)
            && (addresses.iter().all(|blocks| blocks.is_empty()) || unknown_address)
    }

    fn matches_condition(&self, condition: &Condition, unknown_address: bool) -> bool {
        let value = match condition.key.as_str() {
            "source.principal" => &self.principal,
            "source.namespace" => &self.namespace,
            "source.ip" | "remote.ip" => return unknown_address,
            _ => return true,
        };
        field_matches(&condition.values, &condition.not_values, value)
    }

    /// Whether `rule`'s source tests let this peer through (for ALLOW: surely; for DENY: possibly).
    fn passes(&self, rule: &Rule, unknown_address: bool) -> bool {
        (rule.from.is_empty() || rule.from.iter().any(|from| self.matches_source(&from.source, unknown_address)))
            && rule.when.iter().all(|condition| self.matches_condition(condition, unknown_address))
    }
}

fn field_matches(values: &[String], not_values: &[String], value: &str) -> bool {
    (values.is_empty() || values.iter().any(|pattern| istio_match(pattern, value)))
        && !not_values.iter().any(|pattern| istio_match(pattern, value))
}

fn principals_of(peers: &[&Peer]) -> Value {
    json!(peers.iter().map(|peer| peer.principal.as_str()).collect::<Vec<_>>())
}

/// See [`admit_waypoint`]; true when `spec` changed.
fn admit_in_allow(authz: &AuthorizationPolicySpec, peers: &[Peer], spec: &mut Value) -> bool {
    let all: Vec<&Peer> = peers.iter().collect();
    if authz.rules().is_empty() {
        spec["rules"] = json!([{"from": [{"source": {"principals": principals_of(&all)}}]}]);
        return true;
    }
    let mut changed = false;
    let mut twins = Vec::new();
    for (index, rule) in authz.rules().iter().enumerate() {
        let missing: Vec<&Peer> = peers.iter().filter(|peer| tests_source(rule) && !peer.passes(rule, false)).collect();
        if missing.is_empty() {
            continue;
        }
        changed = true;
        let admitting = json!({"source": {"principals": principals_of(&missing)}});
        if !rule.when.iter().any(is_source_condition) {
            if let Some(from) = spec.pointer_mut(&format!("/rules/{index}/from")).and_then(Value::as_array_mut) {
                from.push(admitting);
            }
            continue;
        }
        let mut twin = Map::new();
        twin.insert("from".into(), json!([admitting]));
        if let Some(to) = spec.pointer(&format!("/rules/{index}/to")) {
            twin.insert("to".into(), to.clone());
        }
        let others: Vec<Value> = rule
            .when
            .iter()
            .filter(|condition| !is_source_condition(condition))
            .filter_map(|condition| serde_json::to_value(condition).ok())
            .collect();
        if !others.is_empty() {
            twin.insert("when".into(), Value::Array(others));
        }
        twins.push(Value::Object(twin));
    }
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        rules.extend(twins);
    }
    changed
}

/// See [`admit_waypoint`]; true when `spec` changed.
fn exempt_in_deny(authz: &AuthorizationPolicySpec, peers: &[Peer], spec: &mut Value) -> bool {
    let mut changed = false;
    for (index, rule) in authz.rules().iter().enumerate() {
        let denied: Vec<&Peer> = peers.iter().filter(|peer| tests_source(rule) && peer.passes(rule, true)).collect();
        if denied.is_empty() {
            continue;
        }
        changed = true;
        if rule.from.is_empty() {
            spec["rules"][index]["from"] = json!([{"source": {"notPrincipals": principals_of(&denied)}}]);
            continue;
        }
        for (position, from) in rule.from.iter().enumerate() {
            let exempt: Vec<&Peer> =
                denied.iter().copied().filter(|peer| peer.matches_source(&from.source, true)).collect();
            if exempt.is_empty() {
                continue;
            }
            let source = &mut spec["rules"][index]["from"][position]["source"];
            let mut not_principals = source.get("notPrincipals").and_then(Value::as_array).cloned().unwrap_or_default();
            not_principals.extend(exempt.iter().map(|peer| json!(peer.principal)));
            source["notPrincipals"] = Value::Array(not_principals);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::snapshot_of;
    use super::super::{Conversion, ConvertOptions, convert};
    use super::*;

    const APP: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: shop}
spec:
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec: {serviceAccountName: reviews}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, namespace: shop}
spec:
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {serviceAccountName: reviews}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch, namespace: shop}
spec:
  template:
    metadata: {labels: {app: batch}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
";

    fn run(policies: &str) -> Conversion {
        convert(&snapshot_of(&format!("{APP}---\n{policies}")), &ConvertOptions::default())
    }

    /// Converts with `shop` named explicitly, for inputs that alone would not need a waypoint.
    fn run_in_shop(policies: &str) -> Conversion {
        let options = ConvertOptions { namespaces: vec!["shop".into()], ..ConvertOptions::default() };
        convert(&snapshot_of(&format!("{APP}---\n{policies}")), &options)
    }

    fn item<'a>(conversion: &'a Conversion, kind: &str, name: &str) -> Option<&'a DynamicObject> {
        conversion.items.iter().find(|item| {
            item.types.as_ref().is_some_and(|t| t.kind == kind) && item.metadata.name.as_deref() == Some(name)
        })
    }

    #[test]
    fn an_l7_selector_policy_moves_to_the_waypoint_and_is_replaced() {
        let conversion = run("apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}]
    to: [{operation: {methods: [GET]}}]
    when: [{key: 'request.headers[x-user]', values: [a]}]");
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let copy = item(&conversion, "AuthorizationPolicy", "reviews-waypoint").expect("waypoint copy");
        assert_eq!(
            copy.data["spec"],
            json!({
                "targetRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
                "action": "ALLOW",
                "rules": [{
                    "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/productpage"]}}],
                    "to": [{"operation": {"methods": ["GET"]}}],
                    "when": [{"key": "request.headers[x-user]", "values": ["a"]}]
                }]
            })
        );
        assert!(item(&conversion, "AuthorizationPolicy", "reviews").is_none(), "an L7 policy needs no rule 4 copy");
        assert_eq!(conversion.replaces, vec![ResourceRef::new(Kind::AuthorizationPolicy, Some("shop"), "reviews")]);
        assert!(item(&conversion, "Gateway", "waypoint").is_some(), "the namespace needs a waypoint");
    }

    #[test]
    fn scope_widening_is_warned_about() {
        let conversion = run("apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: v1-only, namespace: shop}
spec:
  selector: {matchLabels: {version: v1}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]");
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(conversion.warnings.iter().any(|w| w.message.contains("istio/istio#61126")));
        assert!(
            conversion.warnings.iter().any(|w| w.message.contains("also selects Deployment shop/reviews-v2")),
            "{:?}",
            conversion.warnings
        );
        assert!(item(&conversion, "AuthorizationPolicy", "v1-only-waypoint").is_some());
    }

    #[test]
    fn pods_without_a_service_are_reported() {
        let conversion = run("apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: batch, namespace: shop}
spec:
  selector: {matchLabels: {app: batch}}
  rules: [{to: [{operation: {methods: [GET]}}]}]");
        assert_eq!(conversion.unsupported.len(), 1);
        assert!(conversion.unsupported[0].reason.contains("Deployment shop/batch is selected by no Service"));
        assert!(item(&conversion, "AuthorizationPolicy", "batch-waypoint").is_none());
        assert!(conversion.replaces.is_empty(), "the policy was not carried over, so it is not replaced");
    }

    #[test]
    fn l4_allow_policies_admit_the_waypoint_principal() {
        let conversion = run("apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-l4, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}]
  - to: [{operation: {ports: ['9080']}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-routes, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{to: [{operation: {paths: [/x]}}]}]");
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let updated = item(&conversion, "AuthorizationPolicy", "reviews-l4").expect("updated copy");
        assert_eq!(
            updated.data["spec"]["rules"][0]["from"],
            json!([
                {"source": {"principals": ["cluster.local/ns/shop/sa/productpage"]}},
                {"source": {"principals": ["cluster.local/ns/shop/sa/waypoint"]}}
            ])
        );
        assert_eq!(updated.data["spec"]["rules"][1], json!({"to": [{"operation": {"ports": ["9080"]}}]}));
        assert_eq!(updated.data["spec"]["selector"], json!({"matchLabels": {"app": "reviews"}}));
        assert!(!is_generated(updated), "an updated copy is still the user's policy");
        assert!(item(&conversion, "AuthorizationPolicy", "reviews-l4-waypoint").is_some());
        assert!(
            !conversion.replaces.contains(&ResourceRef::new(Kind::AuthorizationPolicy, Some("shop"), "reviews-l4")),
            "ztunnel keeps enforcing the L4 policy"
        );
    }

    #[test]
    fn a_policy_that_already_admits_the_waypoint_is_left_alone() {
        let conversion = run_in_shop(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-l4, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/productpage]}}, {source: {principals: [cluster.local/ns/shop/sa/waypoint]}}]",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(item(&conversion, "AuthorizationPolicy", "reviews-l4").is_none(), "no update needed");
        assert!(item(&conversion, "AuthorizationPolicy", "reviews-l4-waypoint").is_some());
    }

    #[test]
    fn a_deny_with_not_principals_exempts_the_waypoint_and_a_missing_principal_is_reported() {
        let policy = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-friends, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: [cluster.local/ns/shop/sa/friend]}}]}]";
        assert!(run(policy).items.is_empty(), "an L4 policy alone does not call for a waypoint");
        let conversion = run_in_shop(policy);
        let updated = item(&conversion, "AuthorizationPolicy", "only-friends").expect("updated copy");
        assert_eq!(
            updated.data["spec"]["rules"][0]["from"][0]["source"]["notPrincipals"],
            json!(["cluster.local/ns/shop/sa/friend", "cluster.local/ns/shop/sa/waypoint"])
        );
        let copy = item(&conversion, "AuthorizationPolicy", "only-friends-waypoint").expect("namespace-wide copy");
        assert_eq!(
            copy.data["spec"]["targetRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}])
        );

        let conflicting = "---
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: a}
spec: {values: {meshConfig: {trustDomain: a.example}}}
---
apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: b}
spec: {values: {meshConfig: {trustDomain: b.example}}}";
        let conversion = run_in_shop(&format!("{policy}\n{conflicting}"));
        assert!(
            conversion
                .unsupported
                .iter()
                .any(|u| u.object.name == "only-friends" && u.reason.contains("waypoint principal is unknown")),
            "{:?}",
            conversion.unsupported
        );
        assert!(item(&conversion, "AuthorizationPolicy", "only-friends").is_none());
    }

    #[test]
    fn other_selector_policies_move_too() {
        let conversion = run("apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: https://issuer.example}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: shop}
spec:
  accessLogging: [{providers: [{name: envoy}]}]");
        let uncovered: Vec<(&str, &str)> =
            conversion.unsupported.iter().map(|u| (u.object.name.as_str(), u.reason.as_str())).collect();
        assert_eq!(uncovered.len(), 1, "{uncovered:?}");
        assert_eq!(uncovered[0].0, "logs");
        assert!(uncovered[0].1.starts_with("Deployment shop/batch is selected by no Service"), "{uncovered:?}");
        let jwt = item(&conversion, "RequestAuthentication", "jwt-waypoint").expect("copy");
        assert_eq!(jwt.data["spec"]["targetRefs"], json!([{"group": "", "kind": "Service", "name": "reviews"}]));
        assert_eq!(jwt.data["spec"]["jwtRules"], json!([{"issuer": "https://issuer.example"}]));
        let logs = item(&conversion, "Telemetry", "logs-waypoint").expect("copy");
        assert_eq!(logs.data["spec"]["targetRefs"][0]["kind"], json!("Gateway"));
        assert_eq!(conversion.replaces, vec![ResourceRef::new(Kind::RequestAuthentication, Some("shop"), "jwt")]);
    }

    /// Issue 16: an unknown field is never copied (invalid) nor silently dropped.
    #[test]
    fn unknown_fields_are_refused_not_copied() {
        let conversion = run_in_shop(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: odd, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  future: {x: 1}
  rules: [{to: [{operation: {methods: [GET], colour: red}}]}]",
        );
        let fields: Vec<&str> = conversion.unsupported.iter().map(|u| u.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.future", "spec.rules[0].to[0].operation.colour"]);
        assert!(item(&conversion, "AuthorizationPolicy", "odd-waypoint").is_none(), "nothing invalid is emitted");
        assert!(conversion.replaces.iter().all(|replaced| replaced.name != "odd"));
    }

    #[test]
    fn gateway_policies_stay_with_the_gateway() {
        let input = "apiVersion: apps/v1
kind: Deployment
metadata: {name: edge-istio, namespace: shop}
spec: {template: {metadata: {labels: {gateway.networking.k8s.io/gateway-name: edge}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: edge, namespace: shop}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: edge}}
  rules: [{to: [{operation: {paths: [/public/*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: classic, namespace: shop}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{to: [{operation: {methods: [GET]}}]}]";
        let conversion = run(input);
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(conversion.items.is_empty(), "gateway policies alone need no waypoint: {:?}", conversion.items);
        let conversion = run_in_shop(input);
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(item(&conversion, "AuthorizationPolicy", "edge-waypoint").is_none());
        assert!(item(&conversion, "AuthorizationPolicy", "classic-waypoint").is_none());
        assert!(conversion.replaces.is_empty());
    }
}
