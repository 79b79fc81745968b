//! Rule 2: mesh VirtualServices become HTTPRoutes (GAMMA: a Service `parentRef` per host).

use super::Report;
use super::objects::Items;
use super::scope::Mesh;
use crate::mesh::ObjectRef;

/// A DestinationRule subset an emitted route sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubsetUse {
    /// Namespace and name of the host Service.
    pub namespace: String,
    pub service: String,
    pub subset: String,
    /// The VirtualService that routes to it.
    pub route: ObjectRef,
}

/// What the route conversion produced besides items.
#[derive(Debug, Default)]
pub struct Routed {
    pub subsets: Vec<SubsetUse>,
    /// VirtualServices converted completely.
    pub replaced: Vec<ObjectRef>,
    /// VirtualServices that were looked at (converted or not), for the DestinationRule clean-up.
    pub seen: Vec<ObjectRef>,
}

pub(crate) fn convert_virtual_services(_mesh: &Mesh, _out: &mut Items, _report: &mut Report) -> Routed {
    Routed::default()
}
