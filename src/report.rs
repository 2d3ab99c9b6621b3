//! Formatting an error for a person: the whole `source()` chain on one line. A leaf.

/// Formats an error with its whole `source()` chain on one line, the way `anyhow`'s `{:#}`
/// does, so the log line, stderr and `status.json` carry the root cause (e.g. "connection
/// refused").
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Wrapper errors often repeat their source's text; saying it twice helps nobody.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
