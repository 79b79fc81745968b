//! Policy and routing equivalence: does a migration change who may call what, and who serves it?
//!
//! The guide promises that every security and traffic policy is kept throughout the migration and
//! then asks people to read YAML. This module checks the promise instead: an evaluator that
//! answers, for a set of objects and one request, whether the request is allowed and which
//! workloads serve it; and a verifier that runs the same representative requests through two
//! configurations (the sidecar-era input and any later state) and lists every difference.
//!
//! # The model
//!
//! The facts come from `AMBIENT-NOTES.md`; where the model simplifies, it says so here.
//!
//! **Who is who.** Modes are derived per workload, never per namespace, so that any mixed,
//! intermediate state can be evaluated: a pod whose spec has an `istio-proxy` container runs a
//! sidecar (a pod template without one gets it when its namespace injects, `istio-injection` or
//! `istio.io/rev`, unless `sidecar.istio.io/inject: "false"`), even in an ambient namespace: the
//! sidecar owns its traffic. Without sidecar, `istio.io/dataplane-mode=ambient` (pod, else
//! namespace; `none` opts out) makes it ambient; anything else is outside the mesh (no identity).
//! Gateway API Gateways of class `istio` are ingress gateways (service account `<name>-istio`);
//! of class `istio-waypoint`, waypoints (service account `<name>`). A Service uses a waypoint when
//! `istio.io/use-waypoint` on the Service, else on its namespace, names a waypoint Gateway that
//! exists and serves Service traffic; a headless Service (`clusterIP: None`) uses none, since its
//! clients connect to pod addresses. A named `targetPort` is the container port of that name on
//! the Service's pods: policies at the pod see it, a waypoint sees the Service port. [`state::MigrationState`] rewrites exactly those labels and
//! containers, so the guide's steps can be replayed on one configuration.
//!
//! **A request** goes from a source (a workload, an ingress gateway, one client outside the mesh,
//! or a caller known only by a principal a policy names: ambient where its namespace is enrolled,
//! else a sidecar client) to a Service port or straight to a pod address, as HTTP (method, path,
//! headers) or TCP.
//!
//! **Path and routing.** A request to a Service passes the Service's waypoint when the client is
//! ambient, or is an ingress gateway and the Service is labelled `istio.io/ingress-use-waypoint`.
//! Sidecar clients, other ingress traffic, clients outside the mesh and every pod-address request
//! skip it. The waypoint routes by the HTTPRoutes whose parent is the Service (Gateway API
//! precedence: exact path, longest prefix, method, most headers, then oldest route and rule
//! order). Without a waypoint, a sidecar client routes by the first route table istiod gives it
//! for the host: a VirtualService (first matching rule; subsets through DestinationRules) or the
//! HTTPRoutes attached to the Service, which Istio 1.27 applies to sidecars too. Which one comes
//! first (the HTTPRoute of the client's own namespace, else the older) is read from Istio's
//! source; [`route`] cites it. Everyone else reaches the Service's endpoints. An ingress gateway's own routes (which pick the Service) do not change in a
//! migration and are not modelled: a gateway request is the one it sends to the Service.
//!
//! **Enforcement.** At the waypoint, the policies attached with `targetRefs` to the Service or to
//! the waypoint Gateway, L4 and L7, with the client's identity. At the destination pod, the
//! selector and namespace-wide policies (own namespace, and the root namespace `istio-system`):
//! by its sidecar (L4 and L7) or, for an ambient pod, by ztunnel (L4 only), with the identity of
//! the peer, which is the **waypoint's** when the request passed one (waypoints do not spoof
//! identity). At each point Istio's order applies: CUSTOM (the external authorizer is not
//! modelled and is assumed to allow), DENY, then ALLOW (with any ALLOW policy present one must
//! match); AUDIT never decides. Where HTTP is unreadable (ztunnel; TCP anywhere) an ALLOW rule
//! naming HTTP attributes matches nothing, a DENY rule is applied without them, except that
//! ztunnel in 1.27 ignores a DENY rule made only of HTTP attributes. `targetRefs` policies are
//! enforced by nobody but a waypoint. A policy admission would reject (an invalid condition key
//! such as the guide's `source.workload_name`) enforces nothing.
//!
//! **End users.** A request may carry an end-user token ([`jwt`]): the RequestAuthentications at
//! a sidecar or a waypoint validate it (an invalid token, or one of an issuer no rule names, is
//! refused with 401) and give the request principal `requestPrincipals` match; a waypoint that
//! validated a token does not forward it unless told to; ztunnel reads none.
//!
//! **Callers.** ztunnel's pods (their container is named `istio-proxy` too) are no sidecar
//! clients; a classic ingress gateway (`istio: ingressgateway`) is an ingress caller, which
//! mesh-bound VirtualServices do not route; a pod whose controller the input lacks (a Job's, a
//! bare pod) is a caller like any other. A policy's principal in a trust domain alias, or in
//! `cluster.local`, names the mesh's own identity, as istiod expands it.
//!
//! **Outcome.** Allowed when every enforcement point on the path allows it at every workload that
//! may serve it; the backend is that set of workloads. Unknown attributes are not guessed: IP
//! blocks match nothing, requests carry no query string. A route to a host the input does not
//! hold makes the outcome unknown (neither allowed nor denied).
//!
//! # The verifier
//!
//! [`verify::verify`] builds representative requests (from every source, including every
//! principal the policies name without a workload, to every Service port and pod address in
//! scope, crossed with the methods, paths and header values of the routes and policies of the
//! destination's namespace, plus the paths on both sides of every prefix boundary (`/api`,
//! `/api/`, `/apix`, `/api/x`: Istio's prefixes compare characters, Gateway API's whole
//! segments), and a method and a path none of them names; bounded by
//! [`verify::MAX_VALUES_PER_DIMENSION`]) and classifies each difference as `loosened` (a security
//! regression), `tightened` (an outage), `rerouted`, or `unknown` (one side routes to a host the
//! input does not hold). Only pod-address traffic that a bypass protection (a DENY policy
//! exempting a waypoint principal) now refuses is `expected`. A request whose source or
//! destination only one configuration holds (another namespace's workload in a dump of one
//! namespace, ztunnel once installed) has no outcome there to compare with: it is counted in the
//! notes, not as a difference. The tokens tried are none, an invalid one, and a valid one of every
//! issuer and request principal the RequestAuthentications and policies in scope name.
//!
//! Sources are not enumerated one by one: for the destinations of each namespace they are
//! partitioned into classes that every rule, route and path in scope treats alike
//! ([`classes`]), one representative per class is evaluated, and a difference holds for every
//! member (its `sources`), so counts are exact. [`verify::verify_exhaustive`] evaluates every
//! source instead; it is the reference a property test holds the classes to, difference for
//! difference.
//!
//! [`verify::verify_change`] is what `oc-ambient-waypoint convert --verify` runs: the input as it
//! runs today against the input plus the conversion, fully migrated (or in a `--state`).
//!
//! # What the model says about sequencing
//!
//! Replaying the guide on bookinfo (see the tests) shows three facts the mutating commands must
//! respect. Clean-up (Step 8) while sidecars remain loosens: sidecar clients skip the waypoint, so
//! they lose the selector policies their destination's sidecar enforced (their routes survive in
//! the HTTPRoutes, which sidecars read too); it belongs with the sidecar removal (Step 9). Creating
//! an HTTPRoute next to a VirtualService (Step 5) changes which table routes the sidecar clients
//! of the route's namespace, so it must route exactly as the VirtualService does from the moment
//! it exists: the version Services it names come first. `istio.io/ingress-use-waypoint` while the destination keeps its sidecar makes
//! the sidecar see the waypoint's identity, which sidecar-era policies do not admit. A bypass
//! protection that exempts sidecar-era callers is right while they have sidecars, and once they are
//! ambient lets them reach pods directly with requests the waypoint would refuse: it has to be
//! narrowed to the waypoint (and ingress gateways that skip it) when the sidecars go.

pub mod authorize;
pub mod classes;
pub mod evaluate;
pub mod jwt;
pub mod route;
pub mod state;
pub mod synthetic;
pub mod topology;
pub mod verify;

pub use evaluate::{Address, HttpRequest, Outcome, Request, Target};
pub use state::MigrationState;
pub use topology::Topology;
pub use verify::{Class, Difference, Verification, verify, verify_exhaustive};

#[cfg(test)]
mod callers_tests;
#[cfg(test)]
pub(crate) mod tests;
