//! Small readings of raw objects the checks share: versions, strings at a path, route parents.
//! Pod and namespace facts are the mesh model's ([`crate::model`]).

use kube_core::DynamicObject;
use serde_json::Value;

use crate::mesh::gateway_api::{HttpRouteSpec, ParentRef};

/// A dotted version (`v1.27.0`, `4.19.3`, `3.2.0-rc1`) as numbers, for comparisons.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim().trim_start_matches('v');
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// `a.b.c` for display.
pub fn version_text(version: (u64, u64, u64)) -> String {
    format!("{}.{}.{}", version.0, version.1, version.2)
}

/// A string at a JSON pointer.
pub fn str_at<'a>(object: &'a DynamicObject, pointer: &str) -> Option<&'a str> {
    object.data.pointer(pointer).and_then(Value::as_str)
}

/// Names of the Services an HTTPRoute attaches to (GAMMA Service parentRefs).
pub fn service_parents(route: &DynamicObject) -> Vec<String> {
    crate::mesh::spec::<HttpRouteSpec>(route)
        .map(|spec| spec.parent_refs.into_iter().filter(ParentRef::is_service).map(|parent| parent.name).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("v1.27.0"), Some((1, 27, 0)));
        assert_eq!(parse_version("4.19"), Some((4, 19, 0)));
        assert_eq!(parse_version("3.2.0-rc1"), Some((3, 2, 0)));
        assert!(parse_version("1.9.0") < parse_version("1.27.0"));
        assert_eq!(parse_version("latest"), None);
    }
}
