//! Formatting an error for a person: the whole `source()` chain on one line, with control
//! characters escaped (server text must not forge log lines or drive a terminal). A leaf.

/// An error and its `source()` chain, outermost first: the one walk that classifiers
/// (TLS failures, how far a login got, missing AWS credentials) and [`chain`] share.
pub fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// A duration as the `delay_ms` log field: whole milliseconds, saturating.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Formats an error with its whole `source()` chain on one line, the way `anyhow`'s `{:#}`
/// does, so the log line, stderr and `status.json` carry the root cause (e.g. "connection
/// refused"). The chain holds text from the network (a server's error message), so it
/// goes through [`printable`].
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    for e in causes(err).skip(1) {
        let s = e.to_string();
        // Wrapper errors often repeat their source's text; saying it twice helps nobody.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
    }
    printable(&out)
}

/// `text` with every control character escaped (`\n`, `\u{1b}`, …): one line, no terminal
/// escape sequence, whatever a server or a file put in it. fd does the same before it
/// prints an error.
pub fn printable(text: &str) -> String {
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Control characters, and the Unicode format characters that reorder or hide text on a
/// terminal or in a log viewer (bidi embeddings, overrides and isolates, zero-width
/// characters, the byte-order mark).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_and_bidi_and_zero_width_characters() {
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(
            printable("evil\u{202e}txt.exe\u{2066}\u{200b}"),
            "evil\\u{202e}txt.exe\\u{2066}\\u{200b}"
        );
        assert_eq!(printable("plain ünïcødé"), "plain ünïcødé");
    }

    #[test]
    fn chain_joins_sources_without_repeating_them() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("connecting to db:5432")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            chain(&Outer(io)),
            "connecting to db:5432: connection refused"
        );
    }

    #[test]
    fn server_text_cannot_forge_a_line_or_an_escape_sequence() {
        let forged =
            "bad\n2026-12-01T00:00:00Z  INFO aurora_sidecar::sidecar: ready\x1b[2J\r\u{9b}";
        let shown = printable(forged);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "bad\\n2026-12-01T00:00:00Z  INFO aurora_sidecar::sidecar: ready\\u{1b}[2J\\r\\u{9b}"
        );
        let io = std::io::Error::other(forged);
        assert!(!chain(&io).contains('\n'));
        assert_eq!(printable("plain: ü"), "plain: ü");
    }
}
