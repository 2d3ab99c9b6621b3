//! The house rules of `src/`, checked mechanically so they hold for the next change too: no
//! production file over 450 lines and no function over 60 (both counted before the
//! file's `#[cfg(test)]`), and no piece of advice (a string literal of 40 characters or
//! more) written twice: a hint lives in one table (`db::hint`, or beside the one error it
//! belongs to) and is named from everywhere else.

use std::collections::BTreeMap;
use std::path::Path;

use crate::layering::rust_files;

const MAX_FILE_LINES: usize = 450;
const MAX_FN_LINES: usize = 60;
const MIN_ADVICE_CHARS: usize = 40;

/// Every file of `src/` by its path there, with its text before `#[cfg(test)]`.
fn production_files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            let code = text
                .split("\n#[cfg(test)]")
                .next()
                .unwrap_or(&text)
                .to_string();
            let name = f
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            (name, code)
        })
        .collect()
}

/// Each function's name and length, from the `fn` line to the brace that closes it at the
/// same indentation (rustfmt's layout); one-line functions and declarations without a
/// body are skipped.
fn functions(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(at) = trimmed.find("fn ") else {
            continue;
        };
        let qualifiers = trimmed[..at]
            .split_whitespace()
            .all(|w| w.starts_with("pub") || ["async", "const", "unsafe"].contains(&w));
        if !qualifiers || trimmed.ends_with('}') {
            continue;
        }
        let name: String = trimmed[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let signature_end = lines[i..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';'));
        if signature_end.is_none_or(|l| l.ends_with(';')) {
            continue;
        }
        let close = format!("{}}}", &line[..line.len() - trimmed.len()]);
        if let Some(n) = lines[i..].iter().position(|l| *l == close) {
            found.push((name, n + 1));
        }
    }
    found
}

/// The string literals of `code` (comments skipped; raw strings and escapes handled),
/// with their text as written.
fn string_literals(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // A char literal ('"', '\'' …) or a lifetime: skip the quote either way.
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'_') =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let start = i + 2 + hashes;
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let end_mark = format!("\"{}", "#".repeat(hashes));
                let end = code[start..].find(&end_mark).map_or(b.len(), |e| start + e);
                found.push(code[start..end].to_string());
                i = end + end_mark.len();
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                found.push(code[start..i.min(b.len())].to_string());
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
}

#[test]
fn no_production_file_is_over_450_lines() {
    let over: Vec<String> = production_files()
        .iter()
        .map(|(name, code)| (name, code.lines().count()))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(name, n)| format!("src/{name}: {n} lines"))
        .collect();
    assert!(
        over.is_empty(),
        "over {MAX_FILE_LINES} lines:\n{}",
        over.join("\n")
    );
}

#[test]
fn no_function_is_over_60_lines() {
    let mut over = Vec::new();
    let mut counted = 0;
    for (name, code) in production_files() {
        for (f, n) in functions(&code) {
            counted += 1;
            if n > MAX_FN_LINES {
                over.push(format!("src/{name}: fn {f}: {n} lines"));
            }
        }
    }
    assert!(
        counted > 300,
        "only {counted} functions found: the reader is broken"
    );
    assert!(
        over.is_empty(),
        "over {MAX_FN_LINES} lines:\n{}",
        over.join("\n")
    );
}

#[test]
fn no_advice_is_written_twice() {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, code) in production_files() {
        for s in string_literals(&code) {
            if s.chars().count() >= MIN_ADVICE_CHARS {
                seen.entry(s).or_default().push(name.clone());
            }
        }
    }
    assert!(
        seen.len() > 100,
        "only {} long strings found: the reader is broken",
        seen.len()
    );
    let twice: Vec<String> = seen
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(s, at)| format!("{s:?} in {}", at.join(", ")))
        .collect();
    assert!(twice.is_empty(), "written twice:\n{}", twice.join("\n"));
}

#[test]
fn the_readers_see_functions_and_strings_as_written() {
    let code = "pub(crate) async fn long(\n    a: u8,\n) -> u8 {\n    let s = \"it's \\\"quoted\\\"\";\n    let c = '\"';\n    a\n}\n\nfn short() {}\n    fn declared(&self) -> u8;\nimpl X {\n    fn inner(&self) {\n        r#\"raw \"one\"\"#;\n    }\n}\n";
    assert_eq!(
        functions(code),
        [("long".to_string(), 7), ("inner".to_string(), 3)]
    );
    assert_eq!(
        string_literals(code),
        ["it's \\\"quoted\\\"", "raw \"one\""]
    );
}
