//! Talking to PostgreSQL: TLS (`tls`), one login and what its failure means (`connect`),
//! creating the app database (`provision`), setting the app's own role up with the admin
//! credentials (`bootstrap`), one pass of login-or-create (`establish`),
//! the retry pacing (`pace`) and the wait loop (`wait`); every login's socket is guarded
//! (`guard`: no password in clear text without TLS). Imports between these files go
//! one way: wait → establish → provision → connect → {tls, guard}, wait → bootstrap →
//! {provision, connect}, and wait → pace → connect
//! (`tests/layering.rs` fails on a loop).
//!
//! A `doctor` command will reuse `connect` and `establish` step by step (TCP, TLS,
//! authentication, database) and report each step's class instead of retrying.

pub mod bootstrap;
pub mod connect;
pub mod establish;
pub mod guard;
pub mod pace;
pub mod provision;
pub mod tls;
pub mod wait;

pub use wait::WaitError;
