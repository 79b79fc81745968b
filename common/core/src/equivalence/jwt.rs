//! End-user tokens: which RequestAuthentication validates a request's JWT, and the request
//! principal policies then see.
//!
//! # Istio's behaviour (RequestAuthentication reference, `security/v1beta1/request_authentication.proto`
//! of istio/api; <https://istio.io/latest/docs/reference/config/security/request_authentication/>)
//!
//! - A RequestAuthentication applies where the AuthorizationPolicies of the same attachment apply:
//!   with a selector (or namespace-wide, or mesh-wide from the root namespace) at the workload's
//!   own proxy, with `targetRefs` at the waypoint (or gateway) it names.
//! - A request carrying a token that fails validation is rejected (401); so is a token from an
//!   issuer none of the applicable `jwtRules` names (Envoy's "Jwt issuer is not configured").
//! - A request without a token is accepted, without a request principal.
//! - A valid token gives the request principal `<iss>/<sub>`, which `requestPrincipals` and the
//!   `request.auth.principal` condition match. Where no RequestAuthentication applies, nothing
//!   validates a token, so no request has a request principal.
//! - After validation the token is removed from the request unless a rule sets
//!   `forwardOriginalToken: true`: a waypoint that validated it does not pass it on.
//! - ztunnel reads no HTTP: it neither validates tokens nor sees request principals.
//!
//! # The model
//!
//! A token travels in the `authorization` header of a representative request, written
//! `Bearer iss=<issuer> sub=<subject>` for a token that validates against a rule for its issuer,
//! or `Bearer invalid` for one that validates nowhere (a bad signature, an expired token). The
//! verifier crosses its requests with no token, an invalid token, and a valid token of every
//! issuer and request principal the RequestAuthentications and policies in scope name.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::mesh::authz::{TargetRef, WorkloadSelector};

use super::topology::{Policy, ROOT_NAMESPACE, Topology};

/// The header a representative request carries its token in (lower case, as every header name).
pub const TOKEN_HEADER: &str = "authorization";
/// The subject of the tokens the verifier makes up for an issuer.
pub const EXAMPLE_SUBJECT: &str = "oc-ambient-user";
const INVALID: &str = "Bearer invalid";

/// `spec` of a RequestAuthentication (security.istio.io/v1), as far as the evaluation reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub target_refs: Vec<TargetRef>,
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub forward_original_token: bool,
}

impl RequestAuthenticationSpec {
    pub fn target_refs(&self) -> impl Iterator<Item = &TargetRef> {
        self.target_refs.iter().chain(self.target_ref.iter())
    }

    pub fn uses_target_refs(&self) -> bool {
        self.target_refs().next().is_some()
    }

    pub fn selector_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.selector.as_ref().map(|selector| &selector.match_labels)
    }
}

/// A token a representative request presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Valid { issuer: String, subject: String },
    Invalid,
}

impl Token {
    /// The `authorization` header value that carries the token.
    pub fn header(&self) -> String {
        match self {
            Token::Valid { issuer, subject } => format!("Bearer iss={issuer} sub={subject}"),
            Token::Invalid => INVALID.to_string(),
        }
    }

    /// The token a request carries, if any.
    pub fn of(headers: &BTreeMap<String, String>) -> Option<Token> {
        let value = headers.get(TOKEN_HEADER)?;
        let valid = value
            .strip_prefix("Bearer iss=")
            .and_then(|rest| rest.split_once(" sub="))
            .map(|(issuer, subject)| Token::Valid { issuer: issuer.to_string(), subject: subject.to_string() });
        Some(valid.unwrap_or(Token::Invalid))
    }

    /// A valid token for a request principal `<iss>/<sub>`; a pattern (`iss/*`) gets the example
    /// subject; None for `*` and suffix patterns, which name no issuer.
    pub fn for_principal(pattern: &str) -> Option<Token> {
        let (issuer, subject) = pattern.rsplit_once('/')?;
        if issuer.is_empty() || issuer.starts_with('*') {
            return None;
        }
        let subject = match subject.trim_end_matches('*') {
            "" => EXAMPLE_SUBJECT,
            prefix if prefix.contains('*') => EXAMPLE_SUBJECT,
            prefix => prefix,
        };
        Some(Token::Valid { issuer: issuer.trim_end_matches('*').to_string(), subject: subject.to_string() })
    }
}

/// The valid tokens worth trying against the destinations of `namespace`: one per issuer of the
/// RequestAuthentications that can validate there (the namespace's, the root namespace's, and
/// those attached to its Services or waypoints from elsewhere), and one per request principal
/// `policies` name (`requestPrincipals`, `notRequestPrincipals`, `request.auth.principal`).
pub fn token_vocabulary(topology: &Topology, namespace: &str, policies: &[&Policy], tokens: &mut Vec<Token>) {
    let validating = topology.request_authentications.iter().filter(|ra| {
        ra.namespace == namespace
            || ra.namespace == ROOT_NAMESPACE
            || ra.spec.target_refs().any(|target| target.namespace.as_deref() == Some(namespace))
    });
    for rule in validating.flat_map(|ra| &ra.spec.jwt_rules).filter(|rule| !rule.issuer.is_empty()) {
        tokens.push(Token::Valid { issuer: rule.issuer.clone(), subject: EXAMPLE_SUBJECT.to_string() });
    }
    for rule in policies.iter().flat_map(|policy| policy.policy.spec.rules()) {
        let sources = rule.from.iter().map(|from| &from.source);
        let named = sources.flat_map(|source| source.request_principals.iter().chain(&source.not_request_principals));
        let conditions = rule.when.iter().filter(|condition| condition.key == "request.auth.principal");
        let in_conditions = conditions.flat_map(|condition| condition.values.iter().chain(&condition.not_values));
        tokens.extend(named.chain(in_conditions).filter_map(|pattern| Token::for_principal(pattern)));
    }
}

/// What the RequestAuthentications at one enforcement point make of a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// No token, or nothing validates tokens here: no request principal.
    Anonymous,
    /// A valid token: the request principal `<iss>/<sub>`.
    Principal(String),
    /// Rejected with 401, and why.
    Rejected(String),
}

/// Validates the token in `headers` against `rules` (those of every RequestAuthentication that
/// applies at one enforcement point).
pub fn authenticate(rules: &[&JwtRule], headers: &BTreeMap<String, String>) -> Authentication {
    let Some(token) = Token::of(headers) else { return Authentication::Anonymous };
    if rules.is_empty() {
        return Authentication::Anonymous;
    }
    match token {
        Token::Invalid => Authentication::Rejected("the token does not validate (401)".into()),
        Token::Valid { issuer, subject } => {
            if rules.iter().any(|rule| rule.issuer == issuer) {
                Authentication::Principal(format!("{issuer}/{subject}"))
            } else {
                Authentication::Rejected(format!("no jwtRule names the token's issuer {issuer} (401)"))
            }
        }
    }
}

/// Whether the request passes its token on after `rules` validated it.
pub fn forwards_token(rules: &[&JwtRule]) -> bool {
    rules.is_empty() || rules.iter().any(|rule| rule.forward_original_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: Option<Token>) -> BTreeMap<String, String> {
        token.map(|token| (TOKEN_HEADER.to_string(), token.header())).into_iter().collect()
    }

    #[test]
    fn tokens_validate_against_the_rules_that_apply() {
        let rule = JwtRule { issuer: "https://idp.example".into(), forward_original_token: false };
        let valid = Token::Valid { issuer: "https://idp.example".into(), subject: "alice".into() };
        let stranger = Token::Valid { issuer: "https://other.example".into(), subject: "bob".into() };
        assert_eq!(authenticate(&[&rule], &with(None)), Authentication::Anonymous, "no token: accepted, anonymous");
        assert_eq!(
            authenticate(&[&rule], &with(Some(valid.clone()))),
            Authentication::Principal("https://idp.example/alice".into())
        );
        assert!(matches!(authenticate(&[&rule], &with(Some(Token::Invalid))), Authentication::Rejected(_)));
        assert!(matches!(authenticate(&[&rule], &with(Some(stranger))), Authentication::Rejected(_)));
        assert_eq!(authenticate(&[], &with(Some(valid.clone()))), Authentication::Anonymous, "nothing validates");
        assert_eq!(Token::of(&with(Some(valid.clone()))), Some(valid));
        assert!(!forwards_token(&[&rule]) && forwards_token(&[]));
    }

    #[test]
    fn request_principal_patterns_give_tokens_of_their_issuer() {
        assert_eq!(
            Token::for_principal("https://idp.example/*"),
            Some(Token::Valid { issuer: "https://idp.example".into(), subject: EXAMPLE_SUBJECT.into() })
        );
        assert_eq!(
            Token::for_principal("issuer-foo/alice"),
            Some(Token::Valid { issuer: "issuer-foo".into(), subject: "alice".into() })
        );
        assert_eq!(Token::for_principal("*"), None);
        assert_eq!(Token::for_principal("*/alice"), None);
    }
}
