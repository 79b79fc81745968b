//! One verdict for a conversion: what `convert`'s exit code, `convert --verify`'s and the check's
//! conversion finding all say (issue 16).
//!
//! A conversion used to have three judges that could disagree: `convert` exited 0 when no field
//! was unsupported, `--verify` exited 0 when the verifier found no unexpected outcome change, and
//! the check called a VirtualService "convertible" from a feature list of its own. Exit 0 must
//! mean what it says: the emitted objects carry every rule over *and* no request changes outcome
//! because of them. So the verdict is faithful only when all of these hold:
//!
//! * no unsupported field ([`Conversion::unsupported`]);
//! * the verifier, run on the input plus the conversion's changes at the end of the migration
//!   (the state every plan ends in; Step 9 narrows the bypass protections there), finds no
//!   unexpected difference;
//! * the verifier dropped nothing (an object it could not read, a change the API server would
//!   refuse): a comparison without them says nothing about them;
//! * the input holds something to convert: an input with no object oc-ambient reads is not
//!   "converted faithfully", it is not converted at all.

use serde::Serialize;

use crate::change::Change;
use crate::equivalence::MigrationState;
use crate::equivalence::verify::{Verification, verify_change};
use crate::kinds::ALL;
use crate::snapshot::Snapshot;

use super::Conversion;

/// Why a conversion is not faithful; empty when it is.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The verification the verdict read (`convert --verify` prints it).
    #[serde(skip)]
    pub verification: Verification,
    /// One line per reason, for people.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// True when the conversion is faithful: exit 0.
    pub fn is_faithful(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Judges `conversion` of `input` (see the module docs). `namespaces` and `state` are those of
/// `convert -n` and `--verify --state`: empty and None for the whole input at the end.
pub fn judge(
    input: &Snapshot,
    conversion: &Conversion,
    namespaces: &[String],
    state: Option<&MigrationState>,
) -> Verdict {
    judge_changes(input, conversion.changes(), conversion.unsupported.len(), namespaces, state)
}

/// [`judge`] of a conversion given as its changes ([`Conversion::take_changes`]) and its number of
/// refusals, for a caller that keeps nothing else of it.
pub fn judge_changes(
    input: &Snapshot,
    changes: Vec<Change>,
    unsupported: usize,
    namespaces: &[String],
    state: Option<&MigrationState>,
) -> Verdict {
    let verification = verify_change(input, changes, namespaces, state);
    let mut reasons = Vec::new();
    if ALL.iter().all(|info| input.all(info.kind).is_empty()) {
        reasons.push("the input holds no object oc-ambient reads: nothing was converted".to_string());
    }
    if unsupported > 0 {
        reasons.push(format!("{unsupported} field(s) could not be converted"));
    }
    let unexpected = verification.unexpected_requests();
    if unexpected > 0 {
        reasons.push(format!(
            "{unexpected} request(s) change outcome with the converted objects at the end of the migration \
             (`oc ambient-waypoint convert --verify` lists them)"
        ));
    }
    reasons.extend(verification.dropped.iter().map(|item| format!("left out of the verification: {item}")));
    Verdict { verification, reasons }
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::snapshot_of;
    use super::super::{ConvertOptions, convert};
    use super::*;

    fn verdict(input: &str) -> Verdict {
        let snapshot = snapshot_of(input);
        judge(&snapshot, &convert(&snapshot, &ConvertOptions::default()), &[], None)
    }

    const APP: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews, namespace: shop}
spec: {template: {metadata: {labels: {app: reviews}}, spec: {serviceAccountName: reviews}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: front, namespace: shop}
spec: {template: {metadata: {labels: {app: front}}, spec: {serviceAccountName: front}}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
";

    #[test]
    fn an_input_with_nothing_oc_ambient_reads_is_not_faithful() {
        let verdict = verdict("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: shop}\n");
        assert!(!verdict.is_faithful());
        assert!(verdict.reasons[0].contains("nothing was converted"), "{:?}", verdict.reasons);
    }

    #[test]
    fn a_faithful_conversion_has_no_reason() {
        let verdict = verdict(&format!(
            "{APP}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/shop/sa/front]}}}}], to: [{{operation: {{methods: [GET]}}}}]}}]
"
        ));
        assert!(verdict.is_faithful(), "{:?}", verdict.reasons);
    }

    #[test]
    fn an_object_the_verifier_cannot_read_is_never_faithful() {
        // A VirtualService whose `http` is not a list: the translator refuses it, and the
        // verifier, which cannot read it either, says it left it out.
        let verdict = verdict(&format!(
            "{APP}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec: {{hosts: [reviews], http: 3}}
"
        ));
        assert!(!verdict.is_faithful());
        assert!(
            verdict.reasons.iter().any(|reason| reason.starts_with("left out of the verification")),
            "{:?}",
            verdict.reasons
        );
        assert!(!verdict.verification.is_conclusive());
    }
}
