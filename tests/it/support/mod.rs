//! Fixtures shared by the integration tests.

pub mod cluster_support;
pub mod common;
pub mod registry_support;
pub mod verify_support;
