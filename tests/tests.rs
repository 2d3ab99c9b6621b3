//! The integration tests, one binary (as ripgrep does): one link instead of one per
//! area, and one harness (`common`) shared by every area. Each area is a module named
//! for what it proves; `cargo test --test tests AREA::` runs one.

mod common;

mod atomicity;
mod bad_input;
mod bootstrap;
mod doctor;
mod dsql;
mod faults;
mod house;
mod iam;
mod layering;
mod once;
mod outage;
mod outdir;
mod pgbouncer;
mod privileges;
mod run;
mod security;
mod tls;
