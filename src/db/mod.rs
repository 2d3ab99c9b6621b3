//! Talking to PostgreSQL: TLS (`tls`), one login and its error classes (`connect`),
//! creating the app database (`provision`), and the wait loop (`wait`).

pub mod connect;
pub mod provision;
pub mod tls;
pub mod wait;

pub use wait::WaitError;
