//! Rules 3 and 4: selector policies move to the waypoint; L4 policies admit the waypoint.

use std::collections::BTreeMap;

use kube::api::DynamicObject;

use super::Report;
use super::objects::Items;
use super::scope::Mesh;
use crate::mesh::ObjectRef;

/// Services that get waypoint-enforced AuthorizationPolicies, with those policies' sources.
#[derive(Debug, Default)]
pub struct Enforced {
    /// (namespace, Service name) to the source policies enforced for it at the waypoint.
    pub services: BTreeMap<(String, String), Vec<ObjectRef>>,
    /// Selector policies with L7 rules the waypoint copies supersede.
    pub replaced: Vec<ObjectRef>,
}

pub(crate) fn convert_policies(
    _mesh: &Mesh,
    _version_services: &[DynamicObject],
    _out: &mut Items,
    _report: &mut Report,
) -> Enforced {
    Enforced::default()
}
