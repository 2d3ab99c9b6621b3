//! Talking to PostgreSQL: TLS (`tls`), one login and what its failure means (`connect`),
//! creating the app database (`provision`), one pass of login-or-create (`establish`),
//! and the wait loop (`wait`).
//!
//! A `doctor` command will reuse `connect` and `establish` step by step (TCP, TLS,
//! authentication, database) and report each step's class instead of retrying.

pub mod connect;
pub mod establish;
pub mod provision;
pub mod tls;
pub mod wait;

pub use wait::WaitError;
