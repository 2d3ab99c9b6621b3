//! The layering in the crate docs' Layout section, checked mechanically: every module of
//! `src/` has a layer, and imports only from layers below its own. An arrow pointing up
//! (or a module nobody placed) fails here, so the import cycle cannot drift back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keep in step with the table in `src/lib.rs`.
const LAYERS: &[(&str, u32)] = &[
    ("exit", 0),
    ("report", 0),
    ("class", 0),
    ("modes", 0),
    ("signal", 0),
    ("outdir", 0),
    ("exec", 0),
    ("privileges", 0),
    ("testing", 0),
    ("crypto", 0),
    ("cli", 1),
    ("secret", 1),
    ("iam", 1),
    ("db", 2),
    ("render", 2),
    ("state", 2),
    ("config", 3),
    ("refresh", 3),
    ("error", 4),
    ("sidecar", 5),
];

/// The crate root may use everything.
const ROOT: u32 = u32::MAX;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/db/wait.rs` → `db`); `None` for the
/// crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Top-level modules named through `crate::` outside the file's test module (tests may
/// reach across layers to build fixtures).
fn imports(text: &str) -> Vec<String> {
    let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').expect("closing brace")];
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.push(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let own = match &module {
            None => ROOT,
            Some(m) => *layer
                .get(m.as_str())
                .unwrap_or_else(|| panic!("module {m} has no layer: add it to LAYERS and to the Layout table in src/lib.rs")),
        };
        let text = std::fs::read_to_string(file).expect("read");
        for name in imports(&text) {
            if module.as_deref() == Some(name.as_str()) {
                continue;
            }
            let theirs = *layer.get(name.as_str()).unwrap_or_else(|| {
                panic!("{} names crate::{name}, which has no layer", file.display())
            });
            if theirs >= own {
                violations.push(format!(
                    "{} (layer {own}) imports crate::{name} (layer {theirs})",
                    file.strip_prefix(&src).expect("under src").display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let text = "use crate::db::wait::Policy;\nuse crate::{secret::Target, modes};\nfn f() { crate::report::chain(x) }\n#[cfg(test)]\nmod tests { use crate::sidecar; }";
    assert_eq!(imports(text), ["db", "secret", "modes", "report"]);
}
