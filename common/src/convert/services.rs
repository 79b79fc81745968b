//! Rule 1: DestinationRule subsets become per-version Services.

use kube::api::DynamicObject;

use super::Report;
use super::objects::Items;
use super::routes::Routed;
use super::scope::Mesh;
use crate::mesh::ObjectRef;

#[derive(Debug, Default)]
pub struct VersionServices {
    /// The Services generated (or found in the input) for subsets.
    pub services: Vec<DynamicObject>,
    /// DestinationRules whose used subsets all became Services.
    pub replaced: Vec<ObjectRef>,
}

pub(crate) fn convert_subsets(
    _mesh: &Mesh,
    _routed: &Routed,
    _out: &mut Items,
    _report: &mut Report,
) -> VersionServices {
    VersionServices::default()
}
