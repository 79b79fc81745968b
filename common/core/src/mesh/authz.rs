//! AuthorizationPolicy, and which of its attributes ztunnel can enforce.
//!
//! ztunnel enforces L4 attributes only (principals, namespaces, IP blocks, ports, and the
//! conditions on those). Everything else is L7 and needs a sidecar or a waypoint. The split matters
//! because ztunnel drops what it cannot read: an ALLOW rule loses its L7 parts and matches nothing
//! (deny-all), and in Istio 1.27 a DENY rule with only L7 parts is not enforced at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec` of an AuthorizationPolicy (security.istio.io/v1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Value>,
    /// `None` (no rules field) and `Some([])` mean the same: the policy matches nothing. An ALLOW
    /// policy that matches nothing denies every request to its workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<From>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<To>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct From {
    #[serde(default)]
    pub source: Source,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct To {
    #[serde(default)]
    pub operation: Operation,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// Condition keys ztunnel understands (L4). Every other valid key is L7.
pub const L4_CONDITION_KEYS: &[&str] =
    &["source.ip", "remote.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"];

/// Is `key` a valid AuthorizationPolicy condition key? (`source.workload_name`, which the guide's
/// Step 5.3 uses, is not.)
pub fn is_valid_condition_key(key: &str) -> bool {
    L4_CONDITION_KEYS.contains(&key)
        || key == "connection.sni"
        || key.starts_with("request.headers[")
        || key.starts_with("request.auth.")
        || key.starts_with("experimental.envoy.filters.")
}

/// Attribute names of a rule that only an L7 proxy (sidecar or waypoint) can evaluate.
impl Rule {
    pub fn l7_attributes(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut note = |present: bool, name: &str| {
            if present && !found.iter().any(|existing| existing == name) {
                found.push(name.to_string());
            }
        };
        for from in &self.from {
            let source = &from.source;
            note(!source.request_principals.is_empty(), "requestPrincipals");
            note(!source.not_request_principals.is_empty(), "notRequestPrincipals");
        }
        for to in &self.to {
            let operation = &to.operation;
            note(!operation.hosts.is_empty(), "hosts");
            note(!operation.not_hosts.is_empty(), "notHosts");
            note(!operation.methods.is_empty(), "methods");
            note(!operation.not_methods.is_empty(), "notMethods");
            note(!operation.paths.is_empty(), "paths");
            note(!operation.not_paths.is_empty(), "notPaths");
        }
        for condition in &self.when {
            note(!L4_CONDITION_KEYS.contains(&condition.key.as_str()), &format!("when {}", condition.key));
        }
        found
    }

    /// True when the rule has at least one L4 attribute (so ztunnel keeps something of it).
    pub fn has_l4_attributes(&self) -> bool {
        let from_l4 = self.from.iter().any(|from| {
            let s = &from.source;
            !(s.principals.is_empty()
                && s.not_principals.is_empty()
                && s.namespaces.is_empty()
                && s.not_namespaces.is_empty()
                && s.ip_blocks.is_empty()
                && s.not_ip_blocks.is_empty()
                && s.remote_ip_blocks.is_empty()
                && s.not_remote_ip_blocks.is_empty()
                && s.service_accounts.is_empty()
                && s.not_service_accounts.is_empty())
        });
        let to_l4 = self.to.iter().any(|to| !to.operation.ports.is_empty() || !to.operation.not_ports.is_empty());
        let when_l4 = self.when.iter().any(|condition| L4_CONDITION_KEYS.contains(&condition.key.as_str()));
        from_l4 || to_l4 || when_l4
    }

    /// Client principals the rule names (for the waypoint-identity trap).
    pub fn principals(&self) -> impl Iterator<Item = &String> {
        self.from.iter().flat_map(|from| from.source.principals.iter())
    }
}

impl AuthorizationPolicySpec {
    /// Enforced by a waypoint (targetRefs) rather than by the workload's proxy (selector or
    /// namespace-wide).
    pub fn uses_target_refs(&self) -> bool {
        !self.target_refs.is_empty() || self.target_ref.is_some()
    }

    pub fn all_target_refs(&self) -> Vec<&TargetRef> {
        self.target_refs.iter().chain(self.target_ref.iter()).collect()
    }

    pub fn rules(&self) -> &[Rule] {
        self.rules.as_deref().unwrap_or(&[])
    }

    /// L7 attributes used anywhere in the policy.
    pub fn l7_attributes(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for rule in self.rules() {
            for attribute in rule.l7_attributes() {
                if !all.contains(&attribute) {
                    all.push(attribute);
                }
            }
        }
        all
    }

    /// Some rule has L7 attributes and no L4 attribute at all.
    pub fn has_l7_only_rule(&self) -> bool {
        self.rules().iter().any(|rule| !rule.l7_attributes().is_empty() && !rule.has_l4_attributes())
    }

    pub fn selector_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.selector.as_ref().map(|selector| &selector.match_labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> AuthorizationPolicySpec {
        crate::mesh::from_yaml(yaml)
    }

    #[test]
    fn l7_and_l4_attributes_are_told_apart() {
        let spec = policy(
            "selector: {matchLabels: {app: reviews}}
action: ALLOW
rules:
- from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-productpage]}}]
  to: [{operation: {methods: [GET]}}]",
        );
        assert_eq!(spec.l7_attributes(), vec!["methods"]);
        assert!(!spec.has_l7_only_rule(), "the rule keeps its principal at ztunnel");
        assert_eq!(spec.rules()[0].principals().count(), 1);

        let deny = policy(
            "action: DENY\nrules:\n- to: [{operation: {paths: [/admin]}}]\n  when: [{key: \"request.headers[x]\", values: [a]}]",
        );
        assert!(deny.has_l7_only_rule());
        assert_eq!(deny.l7_attributes(), vec!["paths", "when request.headers[x]"]);
        assert_eq!(deny.action, Action::Deny);
    }

    #[test]
    fn absent_and_empty_rules_both_match_nothing_and_unknown_fields_survive() {
        let spec = policy("action: ALLOW\nfuture: {x: 1}");
        assert!(spec.rules().is_empty());
        assert!(spec.extra.contains_key("future"));
        assert!(!spec.uses_target_refs());
    }

    #[test]
    fn condition_keys_are_validated() {
        assert!(is_valid_condition_key("source.principal"));
        assert!(is_valid_condition_key("request.headers[end-user]"));
        assert!(!is_valid_condition_key("source.workload_name"));
    }
}
