//! Identities: the mesh's trust domain and the SPIFFE principals built from it.
//!
//! Principals are `<trust domain>/ns/<namespace>/sa/<service account>`. The trust domain is
//! resolved once, with where it came from: the user's `--trust-domain` (kept on the snapshot,
//! since it describes the input), else `values.meshConfig.trustDomain` of the Istio resources,
//! else, with no Istio resource, the one trust domain other than `cluster.local` that the
//! AuthorizationPolicies' principals name (inferred, and reported as such), else `cluster.local`.
//! `values.meshConfig.trustDomainAliases` are read too: istiod treats a policy's principal in an
//! alias, or in `cluster.local`, as one of the mesh's own. Istio resources that disagree, or an invalid name, leave it unknown:
//! whatever needs a principal must then be reported rather than guessed.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::kinds::Kind;
use crate::snapshot::Snapshot;

/// The trust domain when nothing says otherwise (Istio's and OSSM's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// Where the trust domain came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TrustDomainSource {
    /// Given by the user (`--trust-domain`).
    Flag,
    /// `values.meshConfig.trustDomain` of the Istio resource (or its default when it sets none).
    Istio,
    /// The input holds no Istio resource: the default is assumed.
    Assumed,
    /// The input holds no Istio resource, and every principal its AuthorizationPolicies name
    /// outside `cluster.local` is in this one trust domain: the mesh's, most likely.
    Inferred,
}

/// Why the trust domain is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TrustDomainProblem {
    /// The Istio resources name different trust domains.
    Conflict(Vec<String>),
    /// Not a valid trust domain name.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustDomain {
    /// None when `problem` is set.
    pub domain: Option<String>,
    pub source: TrustDomainSource,
    pub problem: Option<TrustDomainProblem>,
    /// `values.meshConfig.trustDomainAliases`: identities in these trust domains are the mesh's
    /// own (see [`TrustDomain::is_own`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl TrustDomain {
    pub fn resolve(snapshot: &Snapshot) -> Self {
        let (candidate, source) = match &snapshot.trust_domain {
            Some(flag) => (Ok(flag.clone()), TrustDomainSource::Flag),
            None => {
                let domains: BTreeSet<String> = snapshot
                    .all(Kind::Istio)
                    .iter()
                    .map(|istio| {
                        istio
                            .data
                            .pointer("/spec/values/meshConfig/trustDomain")
                            .and_then(Value::as_str)
                            .unwrap_or(DEFAULT_TRUST_DOMAIN)
                            .to_string()
                    })
                    .collect();
                let source = if domains.is_empty() && !snapshot.knows(Kind::Istio) {
                    TrustDomainSource::Assumed
                } else {
                    TrustDomainSource::Istio
                };
                match domains.len() {
                    0 => match inferred(snapshot) {
                        Some(domain) => (Ok(domain), TrustDomainSource::Inferred),
                        None => (Ok(DEFAULT_TRUST_DOMAIN.to_string()), source),
                    },
                    1 => (Ok(domains.into_iter().next().unwrap_or_default()), source),
                    _ => (Err(TrustDomainProblem::Conflict(domains.into_iter().collect())), source),
                }
            }
        };
        let aliases: Vec<String> = snapshot
            .all(Kind::Istio)
            .iter()
            .filter_map(|istio| istio.data.pointer("/spec/values/meshConfig/trustDomainAliases")?.as_array().cloned())
            .flatten()
            .filter_map(|alias| alias.as_str().map(str::to_string))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        match candidate {
            Ok(domain) if is_valid(&domain) => TrustDomain { domain: Some(domain), source, problem: None, aliases },
            Ok(domain) => {
                TrustDomain { domain: None, source, problem: Some(TrustDomainProblem::Invalid(domain)), aliases }
            }
            Err(problem) => TrustDomain { domain: None, source, problem: Some(problem), aliases },
        }
    }

    /// Whether a policy's principal in `domain` names the mesh's own identities: istiod expands a
    /// principal in the trust domain, in one of its aliases or in `cluster.local` (which stands for
    /// the local trust domain) to all of them (`pilot/pkg/security/trustdomain/bundle.go`,
    /// `ReplaceTrustDomainAliases`).
    pub fn is_own(&self, domain: &str) -> bool {
        domain == DEFAULT_TRUST_DOMAIN
            || self.domain.as_deref() == Some(domain)
            || self.aliases.iter().any(|alias| alias == domain)
    }

    /// `principal` as the mesh's own identity when it is one of [`TrustDomain::is_own`]'s (its trust
    /// domain replaced by the mesh's), else unchanged. Patterns with a wildcard trust domain, and
    /// anything not of the form `<td>/ns/<ns>/sa/<sa>`, are left as they are.
    pub fn own_principal(&self, principal: &str) -> String {
        let Some(domain) = &self.domain else { return principal.to_string() };
        match principal.split_once('/') {
            Some((from, rest)) if principal.split('/').count() == 5 && !from.contains('*') && self.is_own(from) => {
                format!("{domain}/{rest}")
            }
            _ => principal.to_string(),
        }
    }

    /// The domain, or the default where it is unknown (for reports that must name some principal).
    pub fn or_default(&self) -> &str {
        self.domain.as_deref().unwrap_or(DEFAULT_TRUST_DOMAIN)
    }

    /// `<trust domain>/ns/<namespace>/sa/<service account>`, when the trust domain is known.
    pub fn principal(&self, namespace: &str, service_account: &str) -> Option<String> {
        self.domain.as_ref().map(|domain| principal_in(domain, namespace, service_account))
    }

    /// The namespace and service account of a principal of this trust domain, exactly (no
    /// wildcards).
    pub fn parse<'p>(&self, principal: &'p str) -> Option<(&'p str, &'p str)> {
        let rest = principal.strip_prefix(self.domain.as_deref()?)?.strip_prefix("/ns/")?;
        let (namespace, account) = rest.split_once("/sa/")?;
        let exact = !namespace.is_empty() && !account.is_empty() && !account.contains('/') && !principal.contains('*');
        exact.then_some((namespace, account))
    }
}

/// The one trust domain other than `cluster.local` that the AuthorizationPolicies' exact principals
/// (`<td>/ns/<ns>/sa/<sa>`) name, if there is exactly one.
fn inferred(snapshot: &Snapshot) -> Option<String> {
    let mut domains = BTreeSet::new();
    for policy in snapshot.all(Kind::AuthorizationPolicy) {
        let Ok(spec) = crate::mesh::spec::<crate::mesh::authz::AuthorizationPolicySpec>(policy) else { continue };
        for rule in spec.rules() {
            let sources = rule.from.iter().map(|from| &from.source);
            let named = sources.flat_map(|source| source.principals.iter().chain(&source.not_principals));
            let conditions = rule.when.iter().filter(|condition| condition.key == "source.principal");
            let in_conditions = conditions.flat_map(|condition| condition.values.iter().chain(&condition.not_values));
            for principal in named.chain(in_conditions).filter(|principal| principal.split('/').count() == 5) {
                let domain = principal.split('/').next().unwrap_or_default();
                if domain != DEFAULT_TRUST_DOMAIN && !domain.contains('*') && is_valid(domain) {
                    domains.insert(domain.to_string());
                }
            }
        }
    }
    (domains.len() == 1).then(|| domains.into_iter().next()).flatten()
}

pub fn principal_in(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("{trust_domain}/ns/{namespace}/sa/{service_account}")
}

fn is_valid(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istio(domain: Option<&str>, name: &str) -> kube_core::DynamicObject {
        let values = domain.map(|d| serde_json::json!({"meshConfig": {"trustDomain": d}})).unwrap_or_default();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": name},
            "spec": {"values": values}
        }))
        .unwrap()
    }

    #[test]
    fn the_flag_wins_then_the_istio_resource_then_the_default() {
        let mut snapshot = Snapshot::from_objects([istio(Some("corp.example"), "default")]);
        assert_eq!(TrustDomain::resolve(&snapshot).principal("a", "b").as_deref(), Some("corp.example/ns/a/sa/b"));
        snapshot.trust_domain = Some("flag.example".into());
        let flagged = TrustDomain::resolve(&snapshot);
        assert_eq!((flagged.domain.as_deref(), flagged.source), (Some("flag.example"), TrustDomainSource::Flag));
        let empty = TrustDomain::resolve(&Snapshot::new(crate::snapshot::Source::Memory));
        assert_eq!((empty.domain.as_deref(), empty.source), (Some("cluster.local"), TrustDomainSource::Assumed));
    }

    #[test]
    fn conflicts_and_invalid_names_leave_it_unknown() {
        let two = Snapshot::from_objects([istio(Some("a.example"), "a"), istio(None, "b")]);
        let resolved = TrustDomain::resolve(&two);
        assert_eq!(resolved.domain, None);
        assert_eq!(
            resolved.problem,
            Some(TrustDomainProblem::Conflict(vec!["a.example".into(), "cluster.local".into()]))
        );
        let mut bad = Snapshot::from_objects([]);
        bad.trust_domain = Some("bad domain/x".into());
        assert!(matches!(TrustDomain::resolve(&bad).problem, Some(TrustDomainProblem::Invalid(_))));
        assert_eq!(TrustDomain::resolve(&bad).principal("a", "b"), None);
    }

    fn policy_naming(principal: &str) -> kube_core::DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"rules": [{"from": [{"source": {"principals": [principal]}}]}]}
        }))
        .unwrap()
    }

    #[test]
    fn without_an_istio_resource_the_trust_domain_policies_name_is_inferred() {
        let named = Snapshot::from_objects([policy_naming("corp.example/ns/a/sa/b")]);
        let inferred = TrustDomain::resolve(&named);
        assert_eq!((inferred.domain.as_deref(), inferred.source), (Some("corp.example"), TrustDomainSource::Inferred));
        let two = Snapshot::from_objects([policy_naming("a.example/ns/a/sa/b"), {
            let mut other = policy_naming("b.example/ns/a/sa/b");
            other.metadata.name = Some("q".into());
            other
        }]);
        assert_eq!(TrustDomain::resolve(&two).domain.as_deref(), Some("cluster.local"), "ambiguous: not guessed");
        let default = Snapshot::from_objects([policy_naming("cluster.local/ns/a/sa/b")]);
        assert_ne!(TrustDomain::resolve(&default).source, TrustDomainSource::Inferred);
        let mut with_istio = Snapshot::from_objects([policy_naming("corp.example/ns/a/sa/b"), istio(None, "default")]);
        assert_eq!(TrustDomain::resolve(&with_istio).domain.as_deref(), Some("cluster.local"), "the resource says");
        with_istio.trust_domain = Some("flag.example".into());
        assert_eq!(TrustDomain::resolve(&with_istio).domain.as_deref(), Some("flag.example"));
    }

    #[test]
    fn aliases_and_cluster_local_name_the_mesh_s_own_identities() {
        let mut istio = istio(Some("new.example"), "default");
        istio.data["spec"]["values"]["meshConfig"]["trustDomainAliases"] = serde_json::json!(["old.example"]);
        let td = TrustDomain::resolve(&Snapshot::from_objects([istio]));
        assert_eq!(td.aliases, vec!["old.example".to_string()]);
        assert_eq!(td.own_principal("old.example/ns/a/sa/b"), "new.example/ns/a/sa/b");
        assert_eq!(td.own_principal("cluster.local/ns/a/sa/b"), "new.example/ns/a/sa/b");
        assert_eq!(td.own_principal("other.example/ns/a/sa/b"), "other.example/ns/a/sa/b", "not an alias");
        assert_eq!(td.own_principal("*/ns/a/sa/b"), "*/ns/a/sa/b");
        assert_eq!(td.own_principal("old.example/ns/a/sa/*"), "new.example/ns/a/sa/*");
    }

    #[test]
    fn principals_parse_back_exactly() {
        let td = TrustDomain::resolve(&Snapshot::from_objects([]));
        assert_eq!(td.parse("cluster.local/ns/shop/sa/api"), Some(("shop", "api")));
        assert_eq!(td.parse("cluster.local/ns/shop/sa/*"), None);
        assert_eq!(td.parse("other.example/ns/shop/sa/api"), None);
    }
}
