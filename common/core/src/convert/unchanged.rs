//! Objects the migration leaves as they are: listed, neither converted nor refused (issue 16).
//!
//! Refusing them made exit 1 meaningless as a gate, since almost every real configuration has
//! some. Two kinds are out of the translator's scope:
//!
//! * **Ingress routes.** A VirtualService bound only to Istio ingress `Gateway`s (its `gateways`
//!   name no `mesh` and no Gateway API gateway of the input) is read by the ingress gateway, which
//!   keeps its own routes through the migration: ambient changes how the mesh's workloads are
//!   reached, not the gateway's configuration. (One bound to a Gateway API gateway is converted to
//!   an HTTPRoute with that parent; one bound to the mesh as well is the mesh's.)
//! * **Objects another controller owns.** A progressive-delivery controller rewrites its
//!   VirtualService's weights and its DestinationRule's subset labels at run time (Argo Rollouts
//!   injects `rollouts-pod-template-hash` into the subsets and the canary and stable Services'
//!   selectors, and annotates those Services `argo-rollouts.argoproj.io/managed-by`; Flagger's
//!   generated objects carry an `ownerReference` to their Canary; a Rollout in the input names its
//!   objects, see [`Snapshot::controlled`]). A copy made now would be
//!   frozen at today's weights and never updated, and deleting the original would fight the
//!   controller: the controller's own traffic-routing configuration has to move to Gateway API.

use serde::Serialize;
use serde_json::Value;

use crate::kinds::Kind;
use crate::mesh::networking::{VirtualServiceSpec, service_of_host};
use crate::mesh::{ObjectRef, annotations};
use crate::snapshot::Snapshot;

use kube_core::DynamicObject;

/// Argo Rollouts' annotation on the canary and stable Services it manages.
const ARGO_MANAGED_BY: &str = "argo-rollouts.argoproj.io/managed-by";
/// The label Argo Rollouts injects into Service selectors and DestinationRule subsets.
const ARGO_POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";

/// An object the conversion leaves as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LeftUnchanged {
    pub object: ObjectRef,
    pub reason: String,
}

/// The controller that owns `object`, in words, if another one does.
pub(crate) fn controller(snapshot: &Snapshot, object: &DynamicObject) -> Option<String> {
    let kind = object.types.as_ref().map(|types| types.kind.clone()).unwrap_or_default();
    let key = (kind, object.metadata.namespace.clone(), object.metadata.name.clone().unwrap_or_default());
    if let Some(controller) = snapshot.controlled.get(&key) {
        return Some(format!("{controller} (its canary strategy names it)"));
    }
    if let Some(owner) = object
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| owners.iter().find(|owner| owner.controller == Some(true)).or_else(|| owners.first()))
    {
        return Some(format!("{} {} (ownerReferences)", owner.kind, owner.name));
    }
    if let Some(rollout) = annotations(object).get(ARGO_MANAGED_BY) {
        return Some(format!("Argo Rollout {rollout} ({ARGO_MANAGED_BY})"));
    }
    let selector_hash = object.data.pointer("/spec/selector").and_then(|s| s.get(ARGO_POD_TEMPLATE_HASH)).is_some();
    let subset_hash = object.data.pointer("/spec/subsets").and_then(Value::as_array).is_some_and(|subsets| {
        subsets.iter().any(|subset| subset.pointer("/labels").and_then(|l| l.get(ARGO_POD_TEMPLATE_HASH)).is_some())
    });
    (selector_hash || subset_hash).then(|| format!("an Argo Rollout ({ARGO_POD_TEMPLATE_HASH})"))
}

/// Why the migration leaves this VirtualService as it is, if it does.
pub(crate) fn virtual_service(
    snapshot: &Snapshot,
    vs: &DynamicObject,
    decoded: &Result<VirtualServiceSpec, String>,
) -> Option<String> {
    if let Some(owner) = controller(snapshot, vs) {
        return Some(format!(
            "owned by {owner}, which rewrites it at run time: move that controller's traffic routing to Gateway API"
        ));
    }
    let spec = decoded.as_ref().ok()?;
    let namespace = vs.metadata.namespace.as_deref().unwrap_or_default();
    let managed_backend = spec.http.iter().flat_map(|route| &route.route).find_map(|destination| {
        let (name, host_namespace) = service_of_host(&destination.destination.host, namespace)?;
        controller(snapshot, snapshot.get(Kind::Service, Some(host_namespace), name)?).map(|owner| (name, owner))
    });
    if let Some((service, owner)) = managed_backend {
        return Some(format!(
            "routes to Service {service}, whose selector {owner} sets at run time, and that controller sets this \
             route's weights too: move its traffic routing to Gateway API"
        ));
    }
    let ingress_only = !spec.gateways.is_empty()
        && spec.gateways.iter().all(|gateway| {
            let (gateway_namespace, name) = gateway.split_once('/').unwrap_or((namespace, gateway));
            gateway != "mesh" && snapshot.get(Kind::Gateway, Some(gateway_namespace), name).is_none()
        });
    ingress_only.then(|| {
        format!(
            "bound only to Istio ingress gateways ({}): the gateway keeps its routes through the migration",
            spec.gateways.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::scope::tests::snapshot_of;
    use super::super::{ConvertOptions, convert};

    const APP: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: shop}
spec: {template: {metadata: {labels: {app: shop}}, spec: {serviceAccountName: shop}}}
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: shop}
spec: {selector: {app: shop}, ports: [{name: http, port: 80}]}
";

    fn left_unchanged(input: &str) -> (super::super::Conversion, Vec<String>) {
        let conversion = convert(&snapshot_of(&format!("{APP}---\n{input}")), &ConvertOptions::default());
        let left = conversion.left_unchanged.iter().map(|left| format!("{}: {}", left.object, left.reason)).collect();
        (conversion, left)
    }

    #[test]
    fn ingress_bound_virtual_services_are_left_unchanged_not_refused() {
        let (conversion, left) = left_unchanged(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-ingress, namespace: shop}
spec: {hosts: ['*'], gateways: [shop-gateway], http: [{route: [{destination: {host: shop}}]}]}
",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(conversion.items.is_empty() && conversion.replaces.is_empty());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("bound only to Istio ingress gateways (shop-gateway)"), "{left:?}");
    }

    #[test]
    fn objects_another_controller_owns_are_left_unchanged() {
        let (conversion, left) = left_unchanged(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: podinfo
  namespace: shop
  ownerReferences: [{apiVersion: flagger.app/v1beta1, kind: Canary, name: podinfo, uid: u1, controller: true}]
spec: {hosts: [shop], http: [{route: [{destination: {host: shop}, weight: 100}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-canary, namespace: shop, annotations: {argo-rollouts.argoproj.io/managed-by: shop}}
spec: {selector: {app: shop, rollouts-pod-template-hash: abc}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split, namespace: shop}
spec: {hosts: [shop], http: [{route: [{destination: {host: shop}, weight: 90}, {destination: {host: shop-canary}, weight: 10}]}]}
",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        assert!(conversion.items.iter().all(|item| item.types.as_ref().is_none_or(|t| t.kind != "HTTPRoute")));
        assert!(conversion.replaces.iter().all(|replaced| replaced.name != "podinfo" && replaced.name != "split"));
        assert!(left.iter().any(|l| l.contains("podinfo") && l.contains("owned by Canary podinfo")), "{left:?}");
        assert!(left.iter().any(|l| l.contains("split") && l.contains("Argo Rollout shop")), "{left:?}");
    }

    /// An Argo Rollout of the input (a kind the suite does not otherwise read) names the
    /// VirtualService and DestinationRule it rewrites: both are left as they are.
    #[test]
    fn a_rollouts_virtual_service_and_destination_rule_are_left_unchanged() {
        let (conversion, left) = left_unchanged(
            "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: shop}
spec:
  strategy:
    canary:
      trafficRouting:
        istio:
          virtualService: {name: shop-vsvc, routes: [primary]}
          destinationRule: {name: shop-destrule, canarySubsetName: canary, stableSubsetName: stable}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop-vsvc, namespace: shop}
spec: {hosts: [shop], http: [{name: primary, route: [{destination: {host: shop, subset: stable}, weight: 100}, {destination: {host: shop, subset: canary}, weight: 0}]}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop-destrule, namespace: shop}
spec: {host: shop, subsets: [{name: stable, labels: {app: shop}}, {name: canary, labels: {app: shop}}]}
",
        );
        assert!(conversion.is_faithful(), "{:?}", conversion.unsupported);
        let copies: Vec<&str> = conversion
            .items
            .iter()
            .filter_map(|item| item.types.as_ref().map(|types| types.kind.as_str()))
            .filter(|kind| ["HTTPRoute", "Service", "DestinationRule"].contains(kind))
            .collect();
        assert!(copies.is_empty(), "no frozen copy: {copies:?}");
        assert!(conversion.replaces.is_empty(), "{:?}", conversion.replaces);
        for name in ["shop-vsvc", "shop-destrule"] {
            assert!(left.iter().any(|l| l.contains(name) && l.contains("Argo Rollout shop")), "{name}: {left:?}");
        }
    }
}
