//! Identities: the mesh's trust domain and the SPIFFE principals built from it.
//!
//! Principals are `<trust domain>/ns/<namespace>/sa/<service account>`. The trust domain is
//! resolved once, with where it came from: the user's `--trust-domain` (kept on the snapshot,
//! since it describes the input), else `values.meshConfig.trustDomain` of the Istio resources,
//! else `cluster.local`. Istio resources that disagree, or an invalid name, leave it unknown:
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
                    0 => (Ok(DEFAULT_TRUST_DOMAIN.to_string()), source),
                    1 => (Ok(domains.into_iter().next().unwrap_or_default()), source),
                    _ => (Err(TrustDomainProblem::Conflict(domains.into_iter().collect())), source),
                }
            }
        };
        match candidate {
            Ok(domain) if is_valid(&domain) => TrustDomain { domain: Some(domain), source, problem: None },
            Ok(domain) => TrustDomain { domain: None, source, problem: Some(TrustDomainProblem::Invalid(domain)) },
            Err(problem) => TrustDomain { domain: None, source, problem: Some(problem) },
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

    #[test]
    fn principals_parse_back_exactly() {
        let td = TrustDomain::resolve(&Snapshot::from_objects([]));
        assert_eq!(td.parse("cluster.local/ns/shop/sa/api"), Some(("shop", "api")));
        assert_eq!(td.parse("cluster.local/ns/shop/sa/*"), None);
        assert_eq!(td.parse("other.example/ns/shop/sa/api"), None);
    }
}
