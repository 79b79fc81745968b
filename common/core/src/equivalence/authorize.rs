//! AuthorizationPolicy evaluation at one enforcement point, in Istio's order.
//!
//! CUSTOM policies defer to an external authorizer the model cannot see: a matching CUSTOM policy
//! is recorded and treated as allowing. Then any matching DENY policy denies; then, when ALLOW
//! policies apply, one must match; AUDIT policies never decide.
//!
//! What an enforcement point can read depends on what it is and on the request: a sidecar or a
//! waypoint reads HTTP attributes of HTTP requests; ztunnel never does. Where HTTP attributes are
//! unreadable, an ALLOW rule that names any of them matches nothing, and a DENY rule is applied
//! without them (so it denies more), except at ztunnel where Istio 1.27 ignores a DENY rule made
//! only of HTTP attributes (istio/istio#61126).

use std::collections::{BTreeMap, HashSet};

use crate::mesh::authz::{Action, Condition, Operation, Rule, Source};

use super::topology::Policy;

/// Who enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcer {
    Sidecar,
    Ztunnel,
    Waypoint,
}

impl Enforcer {
    pub fn name(self) -> &'static str {
        match self {
            Enforcer::Sidecar => "sidecar",
            Enforcer::Ztunnel => "ztunnel",
            Enforcer::Waypoint => "waypoint",
        }
    }
}

/// What the enforcement point knows about a request.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The peer's principal (the client, or the waypoint that forwarded the request); None for
    /// plaintext traffic from outside the mesh.
    pub principal: Option<&'a str>,
    /// The port on the destination pod (or the Service port, at a waypoint).
    pub port: u32,
    /// Values the Host header can take for this destination; empty for a pod address.
    pub hosts: &'a [String],
    pub http: Option<&'a super::evaluate::HttpRequest>,
    /// `<iss>/<sub>` of the request's token, where a RequestAuthentication here validated it
    /// (see [`super::jwt`]).
    pub request_principal: Option<&'a str>,
}

impl Attributes<'_> {
    pub(super) fn source_namespace(&self) -> Option<&str> {
        self.principal.and_then(|principal| principal.split("/ns/").nth(1)).and_then(|rest| rest.split('/').next())
    }

    /// `namespace/serviceaccount`, what `serviceAccounts` fields name.
    pub(super) fn service_account(&self) -> Option<String> {
        let principal = self.principal?;
        let (_, rest) = principal.split_once("/ns/")?;
        let (namespace, account) = rest.split_once("/sa/")?;
        Some(format!("{namespace}/{account}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.http.and_then(|http| http.headers.get(&name.to_ascii_lowercase())).map(String::as_str)
    }
}

/// The result of one enforcement point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Which policy decided, in words.
    pub reason: String,
    /// Denied by a DENY policy exempting a waypoint principal: a bypass protection, which sends
    /// traffic that skipped the waypoint away.
    pub by_bypass_protection: bool,
}

/// Decides a request at `enforcer` under the policies that apply there.
pub fn decide(
    policies: &[&Policy],
    enforcer: Enforcer,
    attributes: &Attributes,
    is_waypoint_principal: &dyn Fn(&str) -> bool,
) -> Decision {
    let http_readable = enforcer != Enforcer::Ztunnel && attributes.http.is_some();
    let matches = |policy: &Policy| {
        policy
            .rules
            .iter()
            .any(|rule| rule_matches(rule, policy.policy.spec.action, enforcer, http_readable, attributes))
    };
    let mut custom = Vec::new();
    for policy in policies.iter().filter(|policy| policy.policy.spec.action == Action::Custom) {
        if matches(policy) {
            custom.push(policy.policy.key());
        }
    }
    let custom_note =
        if custom.is_empty() { String::new() } else { format!(" (CUSTOM {} assumed to allow)", custom.join(", ")) };
    for policy in policies.iter().filter(|policy| policy.policy.spec.action == Action::Deny) {
        if matches(policy) {
            return Decision {
                allowed: false,
                reason: format!("{} denies: DENY {} matched{custom_note}", enforcer.name(), policy.policy.key()),
                by_bypass_protection: is_bypass_protection(policy, is_waypoint_principal),
            };
        }
    }
    let allow: Vec<&&Policy> = policies.iter().filter(|policy| policy.policy.spec.action == Action::Allow).collect();
    if allow.is_empty() {
        return Decision {
            allowed: true,
            reason: format!("{} allows: no ALLOW policy applies{custom_note}", enforcer.name()),
            by_bypass_protection: false,
        };
    }
    match allow.iter().find(|policy| matches(policy)) {
        Some(policy) => Decision {
            allowed: true,
            reason: format!("{} allows: ALLOW {} matched{custom_note}", enforcer.name(), policy.policy.key()),
            by_bypass_protection: false,
        },
        None => Decision {
            allowed: false,
            reason: format!(
                "{} denies: no ALLOW policy matched ({})",
                enforcer.name(),
                allow.iter().map(|policy| policy.policy.key()).collect::<Vec<_>>().join(", ")
            ),
            by_bypass_protection: false,
        },
    }
}

/// A DENY policy whose rules exempt a waypoint principal through `notPrincipals`.
fn is_bypass_protection(policy: &Policy, is_waypoint_principal: &dyn Fn(&str) -> bool) -> bool {
    policy.policy.spec.rules().iter().any(|rule| {
        rule.from.iter().any(|from| from.source.not_principals.iter().any(|principal| is_waypoint_principal(principal)))
    })
}

/// A rule compiled for evaluation: its L4 and L7 nature decided once, and its value lists as
/// [`Patterns`], so that a policy naming thousands of principals or paths costs a look-up per
/// request instead of a scan (the verifier evaluates up to its budget of requests against it).
#[derive(Debug, Clone)]
pub struct RuleMatch {
    has_l7: bool,
    has_l4: bool,
    from: Vec<SourceMatch>,
    to: Vec<OperationMatch>,
    when: Vec<ConditionMatch>,
}

impl RuleMatch {
    pub fn new(rule: &Rule) -> Self {
        RuleMatch {
            has_l7: !rule.l7_attributes().is_empty(),
            has_l4: rule.has_l4_attributes(),
            from: rule.from.iter().map(|from| SourceMatch::new(&from.source)).collect(),
            to: rule.to.iter().map(|to| OperationMatch::new(&to.operation)).collect(),
            when: rule.when.iter().map(ConditionMatch::new).collect(),
        }
    }
}

/// Istio string patterns ([`istio_match`]): exact values in a set, the others (`*`, prefixes,
/// suffixes) in a list.
#[derive(Debug, Clone, Default)]
struct Patterns {
    exact: HashSet<String>,
    wildcards: Vec<String>,
}

impl Patterns {
    fn new<'p>(patterns: impl IntoIterator<Item = &'p String>) -> Self {
        let mut compiled = Patterns::default();
        for pattern in patterns {
            if pattern.starts_with('*') || pattern.ends_with('*') {
                compiled.wildcards.push(pattern.clone());
            } else {
                compiled.exact.insert(pattern.clone());
            }
        }
        compiled
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcards.is_empty()
    }

    fn matches(&self, value: &str) -> bool {
        self.exact.contains(value) || self.wildcards.iter().any(|pattern| istio_match(pattern, value))
    }
}

/// A field with `values` and `not_values` (principals and notPrincipals, say).
#[derive(Debug, Clone, Default)]
struct Field {
    values: Patterns,
    not_values: Patterns,
}

impl Field {
    fn new(values: &[String], not_values: &[String]) -> Self {
        Field { values: Patterns::new(values), not_values: Patterns::new(not_values) }
    }

    /// `values` must match when present, `not_values` must not; an unknown value (no identity, no
    /// IP) matches no `values` and no `not_values`.
    fn matches(&self, value: Option<&str>) -> bool {
        let matches_any = |patterns: &Patterns| value.is_some_and(|value| patterns.matches(value));
        (self.values.is_empty() || matches_any(&self.values))
            && (self.not_values.is_empty() || !matches_any(&self.not_values))
    }
}

#[derive(Debug, Clone)]
struct SourceMatch {
    principals: Field,
    namespaces: Field,
    service_accounts: Field,
    ip_blocks: Field,
    remote_ip_blocks: Field,
    request_principals: Field,
}

impl SourceMatch {
    fn new(source: &Source) -> Self {
        SourceMatch {
            principals: Field::new(&source.principals, &source.not_principals),
            namespaces: Field::new(&source.namespaces, &source.not_namespaces),
            service_accounts: Field::new(&source.service_accounts, &source.not_service_accounts),
            ip_blocks: Field::new(&source.ip_blocks, &source.not_ip_blocks),
            remote_ip_blocks: Field::new(&source.remote_ip_blocks, &source.not_remote_ip_blocks),
            request_principals: Field::new(&source.request_principals, &source.not_request_principals),
        }
    }

    fn matches(&self, http_readable: bool, attributes: &Attributes) -> bool {
        let account = attributes.service_account();
        let l4 = self.principals.matches(attributes.principal)
            && self.namespaces.matches(attributes.source_namespace())
            && self.service_accounts.matches(account.as_deref())
            // Addresses are not modelled: IP blocks match nothing, and their negations everything.
            && self.ip_blocks.matches(None)
            && self.remote_ip_blocks.matches(None);
        let l7 = !http_readable || self.request_principals.matches(attributes.request_principal);
        l4 && l7
    }
}

#[derive(Debug, Clone)]
struct OperationMatch {
    /// Lowercased: Host headers are compared case-insensitively.
    hosts: Field,
    ports: Field,
    methods: Field,
    paths: Field,
}

impl OperationMatch {
    fn new(operation: &Operation) -> Self {
        let lowercase = |hosts: &[String]| hosts.iter().map(|host| host.to_ascii_lowercase()).collect::<Vec<_>>();
        OperationMatch {
            hosts: Field::new(&lowercase(&operation.hosts), &lowercase(&operation.not_hosts)),
            ports: Field::new(&operation.ports, &operation.not_ports),
            methods: Field::new(&operation.methods, &operation.not_methods),
            paths: Field::new(&operation.paths, &operation.not_paths),
        }
    }

    fn matches(&self, http_readable: bool, attributes: &Attributes) -> bool {
        let port = attributes.port.to_string();
        let l4 = self.ports.matches(Some(&port));
        if !http_readable {
            return l4;
        }
        let http = attributes.http;
        let hosts_match = |patterns: &Patterns| attributes.hosts.iter().any(|host| patterns.matches(host));
        let hosts = (self.hosts.values.is_empty() || hosts_match(&self.hosts.values))
            && (self.hosts.not_values.is_empty() || !hosts_match(&self.hosts.not_values));
        l4 && hosts
            && self.methods.matches(http.map(|h| h.method.as_str()))
            && self.paths.matches(http.map(|h| h.path.as_str()))
    }
}

#[derive(Debug, Clone)]
struct ConditionMatch {
    key: String,
    field: Field,
}

impl ConditionMatch {
    fn new(condition: &Condition) -> Self {
        ConditionMatch { key: condition.key.clone(), field: Field::new(&condition.values, &condition.not_values) }
    }

    fn matches(&self, http_readable: bool, attributes: &Attributes) -> bool {
        let key = self.key.as_str();
        let port = attributes.port.to_string();
        let value: Option<&str> = match key {
            "source.principal" => attributes.principal,
            "source.namespace" => attributes.source_namespace(),
            "destination.port" => Some(&port),
            "source.ip" | "remote.ip" | "destination.ip" => None,
            _ if !http_readable => return true,
            "request.auth.principal" => attributes.request_principal,
            _ => match key.strip_prefix("request.headers[").and_then(|rest| rest.strip_suffix(']')) {
                Some(name) => attributes.header(name),
                None => None,
            },
        };
        self.field.matches(value)
    }
}

fn rule_matches(
    rule: &RuleMatch,
    action: Action,
    enforcer: Enforcer,
    http_readable: bool,
    attributes: &Attributes,
) -> bool {
    if rule.has_l7 && !http_readable {
        match action {
            // The rule keeps a requirement nobody can check: it matches nothing.
            Action::Allow | Action::Custom | Action::Audit => return false,
            Action::Deny if enforcer == Enforcer::Ztunnel && !rule.has_l4 => return false,
            Action::Deny => {}
        }
    }
    (rule.from.is_empty() || rule.from.iter().any(|from| from.matches(http_readable, attributes)))
        && (rule.to.is_empty() || rule.to.iter().any(|to| to.matches(http_readable, attributes)))
        && rule.when.iter().all(|condition| condition.matches(http_readable, attributes))
}

/// Istio's string match: `*` matches any non-empty value, `abc*` a prefix, `*abc` a suffix,
/// anything else exactly.
pub fn istio_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

/// Values in the policies' HTTP match conditions, for building representative requests.
pub fn policy_vocabulary(
    policies: &[&Policy],
    methods: &mut Vec<String>,
    paths: &mut Vec<String>,
    headers: &mut BTreeMap<String, Vec<String>>,
) {
    for policy in policies {
        for rule in policy.policy.spec.rules() {
            for to in &rule.to {
                methods.extend(
                    to.operation.methods.iter().chain(&to.operation.not_methods).filter(|m| *m != "*").cloned(),
                );
                paths.extend(
                    to.operation.paths.iter().chain(&to.operation.not_paths).filter_map(|path| example_of(path)),
                );
            }
            for condition in &rule.when {
                if let Some(name) =
                    condition.key.strip_prefix("request.headers[").and_then(|rest| rest.strip_suffix(']'))
                {
                    let values =
                        condition.values.iter().chain(&condition.not_values).filter_map(|value| example_of(value));
                    headers.entry(name.to_ascii_lowercase()).or_default().extend(values);
                }
            }
        }
    }
}

/// A concrete value a pattern matches (`/api*` gives `/api`, `*.js` gives `x.js`).
fn example_of(pattern: &str) -> Option<String> {
    if pattern == "*" {
        return None;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return Some(prefix.to_string());
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return Some(format!("x{suffix}"));
    }
    Some(pattern.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::equivalence::evaluate::HttpRequest;
    use crate::equivalence::topology::Named;
    use crate::mesh::authz::AuthorizationPolicySpec;

    fn policy(name: &str, yaml: &str) -> Policy {
        let spec: AuthorizationPolicySpec = crate::mesh::from_yaml(yaml);
        Policy::new(Named { namespace: "ns".into(), name: name.into(), created: String::new(), spec }, None)
    }

    fn get(path: &str) -> HttpRequest {
        HttpRequest { method: "GET".into(), path: path.into(), headers: BTreeMap::new() }
    }

    const CALLER: &str = "cluster.local/ns/ns/sa/caller";
    const WAYPOINT: &str = "cluster.local/ns/ns/sa/waypoint";

    fn at(enforcer: Enforcer, policies: &[&Policy], principal: Option<&str>, http: Option<&HttpRequest>) -> Decision {
        let attributes = Attributes { principal, port: 9080, hosts: &[], http, request_principal: None };
        decide(policies, enforcer, &attributes, &|p| p == WAYPOINT)
    }

    #[test]
    fn an_allow_rule_with_http_parts_matches_nothing_at_ztunnel() {
        let allow = policy(
            "allow",
            "action: ALLOW\nrules:\n- from: [{source: {principals: [cluster.local/ns/ns/sa/caller]}}]\n  to: [{operation: {methods: [GET]}}]",
        );
        let request = get("/");
        assert!(at(Enforcer::Sidecar, &[&allow], Some(CALLER), Some(&request)).allowed);
        let at_ztunnel = at(Enforcer::Ztunnel, &[&allow], Some(CALLER), Some(&request));
        assert!(!at_ztunnel.allowed, "{at_ztunnel:?}");
        assert!(!at(Enforcer::Sidecar, &[&allow], Some(CALLER), None).allowed, "TCP cannot satisfy methods either");
    }

    #[test]
    fn deny_rules_lose_their_http_parts_except_l7_only_ones_at_ztunnel() {
        let l7_only = policy("deny-admin", "action: DENY\nrules:\n- to: [{operation: {paths: [/admin*]}}]");
        let mixed = policy(
            "deny-mixed",
            "action: DENY\nrules:\n- from: [{source: {namespaces: [ns]}}]\n  to: [{operation: {paths: [/admin*]}}]",
        );
        let request = get("/public");
        assert!(at(Enforcer::Sidecar, &[&l7_only], Some(CALLER), Some(&get("/admin/x"))).allowed.eq(&false));
        assert!(at(Enforcer::Ztunnel, &[&l7_only], Some(CALLER), Some(&get("/admin/x"))).allowed, "1.27 ignores it");
        assert!(!at(Enforcer::Sidecar, &[&l7_only], Some(CALLER), None).allowed, "a sidecar applies it to TCP");
        assert!(at(Enforcer::Sidecar, &[&mixed], Some(CALLER), Some(&request)).allowed);
        assert!(!at(Enforcer::Ztunnel, &[&mixed], Some(CALLER), Some(&request)).allowed, "enforced without paths");
    }

    #[test]
    fn deny_beats_allow_and_allow_policies_demand_a_match() {
        let allow_all = policy("allow-all", "action: ALLOW\nrules: [{}]");
        let allow_none = policy("allow-none", "action: ALLOW");
        let protection = policy(
            "protect",
            "action: DENY\nrules:\n- from: [{source: {notPrincipals: [cluster.local/ns/ns/sa/waypoint]}}]",
        );
        let audit = policy("audit", "action: AUDIT\nrules: [{}]");
        let request = get("/");
        assert!(at(Enforcer::Ztunnel, &[&allow_all, &audit], Some(CALLER), Some(&request)).allowed);
        assert!(!at(Enforcer::Ztunnel, &[&allow_none], Some(CALLER), Some(&request)).allowed);
        let denied = at(Enforcer::Ztunnel, &[&allow_all, &protection], Some(CALLER), Some(&request));
        assert!(!denied.allowed && denied.by_bypass_protection, "{denied:?}");
        assert!(at(Enforcer::Ztunnel, &[&allow_all, &protection], Some(WAYPOINT), Some(&request)).allowed);
        assert!(!at(Enforcer::Ztunnel, &[&protection], None, None).allowed, "no identity is not the waypoint");
        assert!(at(Enforcer::Ztunnel, &[], None, None).allowed, "no policy, no enforcement");
    }

    #[test]
    fn conditions_headers_and_patterns() {
        let deny_jason =
            policy("deny-jason", "action: DENY\nrules:\n- when: [{key: 'request.headers[End-User]', values: [jason]}]");
        let mut request = get("/");
        request.headers.insert("end-user".into(), "jason".into());
        assert!(!at(Enforcer::Waypoint, &[&deny_jason], Some(CALLER), Some(&request)).allowed);
        assert!(at(Enforcer::Waypoint, &[&deny_jason], Some(CALLER), Some(&get("/"))).allowed);
        assert!(istio_match("/api*", "/api/v1") && istio_match("*.js", "a.js") && !istio_match("*", ""));
        let (mut methods, mut paths, mut headers) = (Vec::new(), Vec::new(), BTreeMap::new());
        policy_vocabulary(&[&deny_jason], &mut methods, &mut paths, &mut headers);
        assert_eq!(headers.get("end-user"), Some(&vec!["jason".to_string()]));
    }
}
