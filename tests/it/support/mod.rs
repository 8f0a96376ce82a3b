//! Fixtures shared by the integration tests, one file per idea. The broker-facing ones are re-exported here
//! (`use crate::support::*`); the verify, registry and cluster fixtures are used by path.

pub mod bed;
pub mod broker;
pub mod cluster;
pub mod cosign;
pub mod cosign_cli;
pub mod env;
pub mod gpg;
pub mod http;
pub mod http_store;
pub mod registry;
pub mod requester;
pub mod run;
pub mod server;
pub mod sigstore;
pub mod verify_fixtures;

pub use bed::*;
pub use broker::*;
pub use env::*;
pub use gpg::*;
pub use requester::*;
pub use run::*;
pub use server::*;
