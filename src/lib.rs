//! signbus: container signing over a message bus.
//!
//! Two ends talk JSON over AMQP. The [`requester`] turns "sign this image reference at this digest with key K"
//! into request messages and waits for the replies; the [`server`] consumes requests, validates them, signs
//! through gpgme ([`signing`]) and replies. [`wire`] owns the message shapes and the JSON Schemas both ends
//! enforce; [`claim`] owns the atomic container signature payload; [`transport`] moves bytes and knows nothing
//! of gpg or claims. [`verify`] checks images against policy.json and the signatures in lookaside stores;
//! [`store`] publishes signatures into a lookaside store. [`metrics`] owns the server's Prometheus metrics.
//!
//! Layers only point down: `cli` → `server`/`requester` → `transport`, `wire`, `claim`, `signing`, `config`.

pub mod backoff;
pub mod cert;
pub mod claim;
pub mod config;
pub mod cosign;
pub mod digest;
mod layers;
pub mod metrics;
pub mod reference;
pub mod registry;
pub mod requester;
pub mod server;
pub mod signing;
pub mod simple_signing;
pub mod store;
pub mod strict_json;
pub mod tls;
pub mod transport;
pub mod verify;
pub mod wire;
