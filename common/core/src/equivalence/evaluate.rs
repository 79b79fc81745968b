//! One request through one configuration: the path it takes (client proxy, waypoint, destination
//! proxy), who routes it, who enforces policy with which identity, and the outcome.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mesh::authz::TargetRef;

use super::authorize::{Attributes, Decision, Enforcer, decide};
use super::jwt::{Authentication, JwtRule, TOKEN_HEADER, authenticate, forwards_token};
use super::route::Routing;
use super::topology::{Mode, Policy, ROOT_NAMESPACE, Service, Topology, Waypoint, Workload};

/// The source name of the client outside the mesh (no proxy, no identity).
pub const OUTSIDE_CLIENT: &str = "outside-mesh-client";

/// How the destination is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    /// A Service's cluster IP or name: routes and waypoints apply.
    Service,
    /// A pod's IP: no Service, so no routing and no Service-addressed waypoint.
    Pod,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Target {
    pub address: Address,
    pub namespace: String,
    /// The Service, or the workload whose pod is addressed.
    pub name: String,
    pub port: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Request {
    /// `namespace/workload`, `namespace/gateway` or [`OUTSIDE_CLIENT`].
    pub source: String,
    pub destination: Target,
    /// None for TCP.
    pub http: Option<HttpRequest>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = &self.destination;
        write!(
            f,
            "{} -> {} {}/{}:{}",
            self.source,
            target_word(target.address),
            target.namespace,
            target.name,
            target.port
        )?;
        match &self.http {
            None => write!(f, " tcp"),
            Some(http) => {
                write!(f, " {} {}", http.method, http.path)?;
                for (name, value) in &http.headers {
                    write!(f, " {name}={value}")?;
                }
                Ok(())
            }
        }
    }
}

fn target_word(address: Address) -> &'static str {
    match address {
        Address::Service => "svc",
        Address::Pod => "pod",
    }
}

/// What happened to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Reached a backend (or was answered by a route) without being denied.
    pub allowed: bool,
    /// `namespace/workload` of every workload that may serve the request, sorted; empty when
    /// nothing serves it; `["(answered by the proxy)"]` for redirects and direct responses.
    pub backend: Vec<String>,
    /// The path and each decision, in words.
    #[serde(skip)]
    pub explanation: String,
    /// Denied at the destination by a bypass protection (see [`Decision::by_bypass_protection`]).
    #[serde(skip)]
    pub denied_by_bypass_protection: bool,
    /// Routed to a host the input does not hold (see [`Routing::UnknownHost`]): `allowed` and
    /// `backend` say nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

pub const ANSWERED_BY_PROXY: &str = "(answered by the proxy)";

impl Outcome {
    fn refused(why: String) -> Self {
        Outcome {
            allowed: false,
            backend: Vec::new(),
            explanation: why,
            denied_by_bypass_protection: false,
            unknown: false,
        }
    }
}

impl Topology {
    /// The client outside the mesh, a workload or ingress gateway by key, or a client known only
    /// by the principal a policy names (see [`Topology::principal_client`]).
    pub fn source(&self, key: &str) -> Option<Workload> {
        if let Some(client) = self.principal_client(key) {
            return Some(client);
        }
        if key == OUTSIDE_CLIENT {
            return Some(Workload {
                namespace: String::new(),
                name: OUTSIDE_CLIENT.into(),
                source: crate::mesh::ObjectRef::new("Client", None, OUTSIDE_CLIENT),
                service_account: String::new(),
                labels: BTreeMap::new(),
                mode: Mode::OutsideMesh,
                gateway: None,
                principal: None,
            });
        }
        self.workload(key).cloned()
    }

    /// Evaluates one request; see the module docs of [`super`] for the model.
    pub fn evaluate(&self, request: &Request) -> Outcome {
        let Some(client) = self.source(&request.source) else {
            return Outcome::refused(format!("no source workload {}", request.source));
        };
        let target = &request.destination;
        let http = request.http.as_ref();
        let mut steps = vec![format!("{} client", mode_word(client.mode))];
        let client_principal = client.principal();
        // The request as the destination receives it: a waypoint that validated the token removes
        // it unless told to forward it.
        let mut forwarded: Option<HttpRequest> = None;
        let (routing, peer_principal) = match target.address {
            Address::Pod => {
                let key = format!("{}/{}", target.namespace, target.name);
                let Some(workload) = self.application_workload(&key) else {
                    return Outcome::refused(format!("no workload {key}"));
                };
                steps.push("pod address: no Service, no route, no waypoint".into());
                (Routing::Backends { workloads: vec![(workload, target.port)], how: String::new() }, client_principal)
            }
            Address::Service => {
                let Some(service) = self.service(&target.namespace, &target.name) else {
                    return Outcome::refused(format!("no Service {}/{}", target.namespace, target.name));
                };
                if service.port(target.port).is_none() {
                    return Outcome::refused(format!("Service {} has no port {}", service.key(), target.port));
                }
                match self.waypoint_on_path(&client, service) {
                    Some(waypoint) => {
                        let hosts = service_hosts(service, target.port);
                        let jwt_rules = self.waypoint_jwt_rules(service, waypoint);
                        let authentication = authenticate_http(&jwt_rules, http);
                        let routing = self.route_at_waypoint(service, target.port, http);
                        steps.push(format!("via waypoint {}/{}", waypoint.namespace, waypoint.name));
                        push_routing(&mut steps, &routing);
                        let request_principal = match &authentication {
                            Authentication::Rejected(why) => {
                                steps.push(format!("waypoint rejects: {why}"));
                                return finish(routing, false, steps, false);
                            }
                            Authentication::Principal(principal) => Some(principal.as_str()),
                            Authentication::Anonymous => None,
                        };
                        let attributes = Attributes {
                            principal: client_principal.as_deref(),
                            port: target.port,
                            hosts: &hosts,
                            http,
                            request_principal,
                        };
                        let policies = self.waypoint_policies(service, waypoint);
                        let decision =
                            decide(&policies, Enforcer::Waypoint, &attributes, &|p| self.is_waypoint_principal(p));
                        steps.push(decision.reason.clone());
                        if !decision.allowed {
                            return finish(routing, false, steps, false);
                        }
                        if !forwards_token(&jwt_rules) {
                            forwarded = http.map(|http| {
                                let mut http = http.clone();
                                http.headers.remove(TOKEN_HEADER);
                                http
                            });
                        }
                        (routing, Some(self.principal_of(waypoint)))
                    }
                    None => {
                        let routing = match client.mode {
                            Mode::Sidecar => self.route_for_sidecar(&client, service, target.port, http),
                            _ => self.route_by_selector(service, target.port, "the Service's endpoints".into()),
                        };
                        push_routing(&mut steps, &routing);
                        (routing, client_principal)
                    }
                }
            }
        };
        let Routing::Backends { workloads, .. } = &routing else {
            let allowed = matches!(routing, Routing::Answered { .. });
            return finish(routing, allowed, steps, false);
        };
        let hosts = match target.address {
            Address::Service => {
                self.service(&target.namespace, &target.name).map(|s| service_hosts(s, target.port)).unwrap_or_default()
            }
            Address::Pod => Vec::new(),
        };
        let mut allowed = true;
        let mut by_protection = false;
        let http = forwarded.as_ref().or(http);
        for (workload, port) in workloads {
            let decision = self.destination_decision(workload, *port, peer_principal.as_deref(), &hosts, http);
            steps.push(format!("{}: {}", workload.key(), decision.reason));
            allowed &= decision.allowed;
            by_protection |= decision.by_bypass_protection;
        }
        let outcome_routing = routing.clone();
        finish(outcome_routing, allowed, steps, !allowed && by_protection)
    }

    /// The waypoint a request passes: the Service's waypoint, for ambient clients, and for
    /// ingress gateways when the Service asks for it. Sidecar clients and clients outside the
    /// mesh skip waypoints.
    fn waypoint_on_path(&self, client: &Workload, service: &Service) -> Option<&Waypoint> {
        let uses_waypoints = match client.mode {
            Mode::Ambient => true,
            Mode::IngressGateway => Topology::ingress_uses_waypoint(service),
            Mode::Sidecar | Mode::OutsideMesh => false,
        };
        uses_waypoints.then(|| self.waypoint_of(service)).flatten()
    }

    /// Policies attached with targetRefs to the Service or to the waypoint Gateway.
    fn waypoint_policies(&self, service: &Service, waypoint: &Waypoint) -> Vec<&Policy> {
        let targets = |target: &TargetRef, policy_namespace: &str| {
            let namespace = target.namespace.as_deref().unwrap_or(policy_namespace);
            let service_target = target.kind == "Service"
                && matches!(target.group.as_str(), "" | "core")
                && target.name == service.name
                && namespace == service.namespace;
            let gateway_target = target.kind == "Gateway"
                && target.group == "gateway.networking.k8s.io"
                && target.name == waypoint.name
                && namespace == waypoint.namespace;
            service_target || gateway_target
        };
        let waypoint_namespace =
            (waypoint.namespace != service.namespace).then(|| self.policies_in(&waypoint.namespace));
        self.policies_in(&service.namespace)
            .chain(waypoint_namespace.into_iter().flatten())
            .filter(|policy| policy.rejected.is_none())
            .filter(|policy| {
                policy.policy.spec.all_target_refs().iter().any(|target| targets(target, &policy.policy.namespace))
            })
            .collect()
    }

    /// Selector and namespace-wide policies that apply to a workload's own proxy: its namespace's,
    /// and the root namespace's.
    pub fn workload_policies(&self, workload: &Workload) -> Vec<&Policy> {
        let root = (workload.namespace != ROOT_NAMESPACE).then(|| self.policies_in(ROOT_NAMESPACE));
        self.policies_in(&workload.namespace)
            .chain(root.into_iter().flatten())
            .filter(|policy| policy.rejected.is_none() && !policy.policy.spec.uses_target_refs())
            .filter(|policy| {
                policy
                    .policy
                    .spec
                    .selector_labels()
                    .is_none_or(|selector| crate::mesh::selector_matches(selector, &workload.labels))
            })
            .collect()
    }

    /// The destination pod's proxy: its sidecar (L4 and L7), else ztunnel (L4) when enrolled,
    /// else nothing.
    fn destination_decision(
        &self,
        workload: &Workload,
        port: u32,
        peer: Option<&str>,
        hosts: &[String],
        http: Option<&HttpRequest>,
    ) -> Decision {
        let enforcer = match workload.mode {
            // A classic ingress gateway's Envoy enforces the policies that select its pods, as a
            // sidecar does (Gateway API gateways are never pod-address destinations).
            Mode::Sidecar | Mode::IngressGateway => Enforcer::Sidecar,
            Mode::Ambient => Enforcer::Ztunnel,
            Mode::OutsideMesh => {
                return Decision {
                    allowed: true,
                    reason: "outside the mesh: nothing enforces".into(),
                    by_bypass_protection: false,
                };
            }
        };
        // ztunnel reads no HTTP, so it validates no token either.
        let jwt_rules = if enforcer == Enforcer::Ztunnel { Vec::new() } else { self.workload_jwt_rules(workload) };
        let request_principal = match authenticate_http(&jwt_rules, http) {
            Authentication::Rejected(why) => {
                return Decision {
                    allowed: false,
                    reason: format!("{} rejects: {why}", enforcer.name()),
                    by_bypass_protection: false,
                };
            }
            Authentication::Principal(principal) => Some(principal),
            Authentication::Anonymous => None,
        };
        let attributes =
            Attributes { principal: peer, port, hosts, http, request_principal: request_principal.as_deref() };
        let policies = self.workload_policies(workload);
        let mut decision = decide(&policies, enforcer, &attributes, &|p| self.is_waypoint_principal(p));
        decision.reason = format!("{} as {}", decision.reason, peer.unwrap_or("no identity"));
        decision
    }
}

/// What the jwtRules at one enforcement point make of a request (TCP carries no token).
fn authenticate_http(rules: &[&JwtRule], http: Option<&HttpRequest>) -> Authentication {
    http.map_or(Authentication::Anonymous, |http| authenticate(rules, &http.headers))
}

fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Sidecar => "sidecar",
        Mode::Ambient => "ambient",
        Mode::IngressGateway => "ingress gateway",
        Mode::OutsideMesh => "outside-mesh",
    }
}

fn push_routing(steps: &mut Vec<String>, routing: &Routing) {
    match routing {
        Routing::Backends { how, .. } | Routing::Answered { how } if !how.is_empty() => {
            steps.push(format!("routed by {how}"))
        }
        Routing::Unrouted { why } | Routing::UnknownHost { why } => steps.push(why.clone()),
        _ => {}
    }
}

fn finish(routing: Routing, allowed: bool, steps: Vec<String>, denied_by_bypass_protection: bool) -> Outcome {
    let mut backend: Vec<String> = match &routing {
        Routing::Backends { workloads, .. } => workloads.iter().map(|(workload, _)| workload.key()).collect(),
        Routing::Answered { .. } => vec![ANSWERED_BY_PROXY.to_string()],
        Routing::Unrouted { .. } | Routing::UnknownHost { .. } => Vec::new(),
    };
    backend.sort();
    backend.dedup();
    let unknown = matches!(routing, Routing::UnknownHost { .. });
    Outcome { allowed, backend, explanation: steps.join("; "), denied_by_bypass_protection, unknown }
}

/// Host header values a client may send to a Service.
fn service_hosts(service: &Service, port: u32) -> Vec<String> {
    let names = [
        service.name.clone(),
        format!("{}.{}", service.name, service.namespace),
        format!("{}.{}.svc", service.name, service.namespace),
        format!("{}.{}.svc.cluster.local", service.name, service.namespace),
    ];
    names.iter().flat_map(|name| [name.clone(), format!("{name}:{port}")]).collect()
}
