//! Talking to PostgreSQL: TLS (`tls`), one login (`connect`) over a guarded socket
//! (`guard`: no password in clear text without TLS); what a failure is (`classify`), the
//! advice for it (`hint`) and what it calls for (`remedy`: retry, set the app role up,
//! create the database, give up), shared with the refresh check and doctor; creating the
//! app database (`provision`), setting the app's own role up with the admin credentials
//! (`bootstrap`; where the admin login comes from, a secret or an IAM token: `admin`), one pass of login-or-create (`establish`), the retry pacing (`pace`),
//! the retry loop (`retry`) and the wait's attempt (`wait`); `RELOAD` for PgBouncer
//! (`reload`, on its own). Imports between these files
//! go one way (`tests/layering.rs` fails on a loop): wait → {retry, remedy, establish,
//! bootstrap} → provision → connect → {classify, hint, tls, guard}.

pub mod admin;
pub mod bootstrap;
pub mod classify;
pub mod connect;
pub mod dsql_roles;
pub mod establish;
pub mod guard;
pub mod hint;
pub mod pace;
pub mod provision;
pub mod reload;
pub mod remedy;
pub mod retry;
pub mod statements;
pub mod tls;
pub mod wait;

pub use retry::WaitError;
