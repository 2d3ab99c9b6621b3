//! Talking to PostgreSQL: TLS (`tls`), one login and what its failure means (`connect`),
//! creating the app database (`provision`), setting the app's own role up with the admin
//! credentials (`bootstrap`), what a failed login calls for besides a retry (`remedy`,
//! shared with the refresh check and doctor), one pass of login-or-create (`establish`),
//! the retry pacing (`pace`) and the wait loop (`wait`); every login's socket is guarded
//! (`guard`: no password in clear text without TLS). Imports between these files go
//! one way: wait → establish → provision → connect → {tls, guard}, wait → bootstrap →
//! {provision, connect}, wait → remedy → connect, and wait → pace → connect
//! (`tests/layering.rs` fails on a loop).

pub mod bootstrap;
pub mod connect;
pub mod establish;
pub mod guard;
pub mod pace;
pub mod provision;
pub mod remedy;
pub mod tls;
pub mod wait;

pub use wait::WaitError;
