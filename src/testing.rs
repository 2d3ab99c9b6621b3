//! Test-only support (compiled under `cfg(test)`, and included by the integration tests'
//! `tests/common`): counts the cases a property test really ran; records figures for
//! `docs/RELIABILITY.md` when `scripts/reliability` asks for them
//! (`AURORA_SIDECAR_FIGURES`); lists a directory for the file tests. A leaf: it imports
//! nothing of the crate.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// A property's case counter. The figure is written when the count reaches the
/// configured total, so a property that stopped early (a failure) records nothing.
pub struct Cases {
    name: &'static str,
    total: u32,
    ran: AtomicU32,
}

impl Cases {
    pub const fn new(name: &'static str, total: u32) -> Self {
        Self {
            name,
            total,
            ran: AtomicU32::new(0),
        }
    }

    /// The configured number of cases (for `ProptestConfig::with_cases`).
    pub const fn total(&self) -> u32 {
        self.total
    }

    /// Call once at the top of the property's body.
    pub fn tick(&self) {
        if self.ran.fetch_add(1, Ordering::Relaxed) + 1 == self.total {
            figure(self.name, self.total);
        }
    }
}

/// Records a figure for `docs/RELIABILITY.md`: appends `{"figure": name, "value": value}`
/// to the file named by `AURORA_SIDECAR_FIGURES` when `scripts/reliability` sets it; a
/// no-op otherwise (a plain `cargo test`). Shared with the integration tests
/// (`tests/common` includes this file).
pub fn figure(name: &str, value: impl Into<serde_json::Value>) {
    let Some(path) = std::env::var_os("AURORA_SIDECAR_FIGURES") else {
        return;
    };
    let line = serde_json::json!({ "figure": name, "value": value.into() }).to_string();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("figures file opens");
    // One write per line, so figures from parallel tests do not interleave.
    f.write_all(format!("{line}\n").as_bytes())
        .expect("figure written");
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}
