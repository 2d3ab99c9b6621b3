//! The layering in the crate docs' Layout section, checked mechanically: every module of
//! `src/` has a layer, and imports only from layers below its own. An arrow pointing up
//! (or a module nobody placed) fails here, so the import cycle cannot drift back. Inside a
//! folder module (`db/`, `secret/`, `refresh/`), the files import each other without a
//! loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of every module, read from the Layout table of `src/lib.rs` (defined there
/// once): in each row, every module linked as [`name`] in the modules column; a module
/// lib.rs declares for tests only (`#[cfg(test)] mod name;`) is a leaf.
fn layers() -> BTreeMap<String, u32> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let text = std::fs::read_to_string(lib).expect("read lib.rs");
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let digits: String = cells[0].chars().take_while(char::is_ascii_digit).collect();
        let Ok(layer) = digits.parse::<u32>() else {
            continue;
        };
        for (at, _) in cells[1].match_indices("[`") {
            let name = &cells[1][at + 2..];
            let name = &name[..name.find("`]").expect("closing `]")];
            if !name.contains("::") {
                let earlier = layers.insert(name.to_string(), layer);
                assert!(
                    earlier.is_none(),
                    "{name} is in two rows of the Layout table"
                );
            }
        }
    }
    for (at, _) in text.match_indices("#[cfg(test)]\nmod ") {
        let rest = &text[at + "#[cfg(test)]\nmod ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with(';') {
            layers.insert(name, 0);
        }
    }
    layers
}

#[test]
fn the_layout_table_places_every_module_of_the_crate_root() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let text = std::fs::read_to_string(lib).expect("read lib.rs");
    let layers = layers();
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    assert!(declared.len() >= 20, "{declared:?}");
    for m in &declared {
        assert!(
            layers.contains_key(*m),
            "{m} is not in the Layout table of src/lib.rs"
        );
    }
    assert_eq!(layers.len(), declared.len(), "{layers:?} vs {declared:?}");
    assert_eq!(
        (layers["outdir"], layers["db"], layers["doctor"]),
        (0, 3, 7)
    );
}

/// The crate root may use everything.
const ROOT: u32 = u32::MAX;

/// The `.rs` files below `dir` (`tests/house.rs` reads the same ones).
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
    let layer = layers();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let own = match &module {
            None => ROOT,
            Some(m) => *layer.get(m.as_str()).unwrap_or_else(|| {
                panic!("module {m} has no layer: add it to the Layout table in src/lib.rs")
            }),
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
    let text = "use crate::db::pace::Policy;\nuse crate::{secret::Target, modes};\nfn f() { crate::display::chain(x) }\n#[cfg(test)]\nmod tests { use crate::sidecar; }";
    assert_eq!(imports(text), ["db", "secret", "modes", "display"]);
}

/// The sibling files a file of a folder module names (`super::NAME` or
/// `crate::FOLDER::NAME`) outside its test module. `mod.rs` is the folder's root, which
/// declares the others, so it is not a sibling.
fn sibling_imports(text: &str, folder: &str, siblings: &[String]) -> Vec<String> {
    let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
    let mut found = Vec::new();
    for prefix in ["super::".to_string(), format!("crate::{folder}::")] {
        for (i, _) in code.match_indices(&prefix) {
            let rest = &code[i + prefix.len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').expect("closing brace")]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("").trim())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                ],
            };
            for name in names {
                if siblings.iter().any(|s| s == name) && !found.iter().any(|f| f == name) {
                    found.push(name.to_string());
                }
            }
        }
    }
    found
}

/// A loop in `edges` (file → files it imports), as the files on it, if there is one.
fn find_loop(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.iter().any(|d| d == node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_string());
        None
    }
    let mut done = Vec::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[test]
fn files_inside_a_folder_module_import_each_other_without_a_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = 0;
    for entry in std::fs::read_dir(&src).expect("read src") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        folders += 1;
        let folder = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let stem = |f: &PathBuf| f.file_stem().expect("stem").to_string_lossy().into_owned();
        let siblings: Vec<String> = files.iter().map(stem).filter(|s| s != "mod").collect();
        let edges: BTreeMap<String, Vec<String>> = files
            .iter()
            .filter(|f| stem(f) != "mod")
            .map(|f| {
                let text = std::fs::read_to_string(f).expect("read");
                (stem(f), sibling_imports(&text, &folder, &siblings))
            })
            .collect();
        assert!(
            find_loop(&edges).is_none(),
            "src/{folder}/ has an import loop: {}",
            find_loop(&edges).unwrap_or_default().join(" -> ")
        );
    }
    assert!(folders >= 3, "db/, secret/ and refresh/ are read");
}

#[test]
fn the_loop_finder_sees_a_loop_between_two_files() {
    let text = "use super::connect::{DbError, Stage};\nuse crate::db::{establish::x, pace};\n#[cfg(test)]\nmod tests { use super::wait; }";
    let siblings = ["connect", "establish", "pace", "wait"].map(String::from);
    assert_eq!(
        sibling_imports(text, "db", &siblings),
        ["connect", "establish", "pace"]
    );
    let edge = |a: &str, b: &[&str]| (a.to_string(), b.iter().map(|s| s.to_string()).collect());
    let looped: BTreeMap<String, Vec<String>> = [
        edge("wait", &["establish", "pace"]),
        edge("establish", &["provision", "wait"]),
        edge("provision", &[]),
        edge("pace", &[]),
    ]
    .into();
    assert_eq!(
        find_loop(&looped).expect("a loop"),
        ["establish", "wait", "establish"]
    );
    let straight: BTreeMap<String, Vec<String>> = [
        edge("wait", &["establish"]),
        edge("establish", &["provision"]),
    ]
    .into();
    assert!(find_loop(&straight).is_none());
}
