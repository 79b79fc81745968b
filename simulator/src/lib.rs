//! Mesh simulator (issue 3).
