//! Latchkey: a self-hosted API-key service that speaks ProGet's API-key HTTP API.
//!
//! `config` reads the command line, `server` starts and stops, `http` routes
//! requests to thin handlers, `auth` turns a credential into a principal,
//! `keys` holds generation, validation and policy, `store` persists,
//! `usage` records last use and access logs off the request path, and
//! all use the types of `domain`.

pub mod auth;
pub mod check;
pub mod config;
pub mod console;
pub mod domain;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod store;
pub mod usage;
