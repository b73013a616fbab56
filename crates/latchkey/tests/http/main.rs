//! Black-box HTTP tests: the real `latchkey` binary on a real socket, on
//! every storage back end.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod auth;
mod cli;
mod delete;
mod floods;
mod forward;
mod general;
mod groups;
mod health;
mod hostile;
mod input;
mod key_rotation;
mod keys;
mod leaked;
mod limiter;
mod limits;
mod listing;
mod metrics;
mod openapi;
mod permissions;
mod redaction;
mod rotation;
mod server;
mod startup;
mod usage;
mod users;
mod verify;
