//! Formatting an error for a person: the whole `source()` chain on one line. A leaf.

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
/// refused").
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
