//! Test-only support (compiled under `cfg(test)`): counts the cases a property test really
//! ran and, when `scripts/reliability` asks for figures (`AURORA_SIDECAR_FIGURES`),
//! records the count for `docs/RELIABILITY.md`; lists a directory for the file tests. A
//! leaf: it imports nothing of the crate.

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
            record(self.name, self.total);
        }
    }
}

fn record(name: &str, value: u32) {
    let Some(path) = std::env::var_os("AURORA_SIDECAR_FIGURES") else {
        return;
    };
    let line = format!("{{\"figure\":\"{name}\",\"value\":{value}}}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
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
