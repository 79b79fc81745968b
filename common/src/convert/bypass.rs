//! Rule 5: ztunnel bypass protection for Services with waypoint-enforced policies.

use super::objects::Items;
use super::policies::Enforced;
use super::scope::Mesh;
use super::{LabelChange, Report};

pub(crate) fn protect(_mesh: &Mesh, _enforced: &Enforced, _out: &mut Items, _report: &mut Report) -> Vec<LabelChange> {
    Vec::new()
}
