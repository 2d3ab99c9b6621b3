//! What kind of endpoint a host name is, from its form alone, and the AWS region it
//! carries: the one place that reads AWS host names (the TLS default, the IAM token's
//! service and region, doctor's DNS step ask here). A leaf.
//!
//! - RDS and Aurora: `NAME.(cluster-|cluster-ro-|proxy-)ID.REGION.rds.amazonaws.com`, and
//!   `.com.cn` in China; cluster, reader, instance and proxy endpoints carry the region as
//!   the label before `rds`.
//! - Aurora DSQL: `ID.dsql.REGION.on.aws` (AWS DSQL User Guide, "Connecting to clusters";
//!   botocore's DSQL signer signs for that host, without a port).

/// The kinds of endpoint the sidecar treats apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// RDS or Aurora: verified against the image's RDS bundle by default; IAM tokens for
    /// service `rds-db`.
    Rds,
    /// Aurora DSQL: verified against the system roots; tokens for service `dsql`.
    Dsql,
    /// Anything else (an IP address, a private DNS name, a test server).
    Other,
}

/// The kind of `host`, case-insensitive, a trailing dot allowed.
pub fn kind(host: &str) -> Endpoint {
    if rds_rest(host).is_some() {
        Endpoint::Rds
    } else if dsql_region(host).is_some() {
        Endpoint::Dsql
    } else {
        Endpoint::Other
    }
}

/// The region an RDS, Aurora or DSQL host name carries; `None` for any other host.
pub fn region(host: &str) -> Option<String> {
    let region = match rds_rest(host) {
        Some(rest) => rest.rsplit('.').next()?.to_string(),
        None => dsql_region(host)?,
    };
    (!region.is_empty() && region.contains('-')).then_some(region)
}

/// What comes before `.rds.amazonaws.com(.cn)`, lowercase.
fn rds_rest(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = host
        .strip_suffix(".rds.amazonaws.com")
        .or_else(|| host.strip_suffix(".rds.amazonaws.com.cn"))?;
    Some(rest.to_string())
}

/// `ID.dsql.REGION.on.aws` → `REGION`, lowercase.
fn dsql_region(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_suffix(".on.aws")?;
    let (id_and_dsql, region) = rest.rsplit_once('.')?;
    let id = id_and_dsql.strip_suffix(".dsql")?;
    (!id.is_empty() && !id.contains('.') && region.contains('-')).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_form_has_its_kind_and_region() {
        for (host, want, want_region) in [
            (
                "app.cluster-c9abcdefghij.eu-west-1.rds.amazonaws.com",
                Endpoint::Rds,
                Some("eu-west-1"),
            ),
            (
                "app.cluster-ro-c9abcdefghij.us-east-2.rds.amazonaws.com.",
                Endpoint::Rds,
                Some("us-east-2"),
            ),
            (
                "db.c9abcdefghij.cn-north-1.rds.amazonaws.com.cn",
                Endpoint::Rds,
                Some("cn-north-1"),
            ),
            (
                "p.proxy-abc.ap-south-1.rds.amazonaws.com",
                Endpoint::Rds,
                Some("ap-south-1"),
            ),
            (
                "DB.X.EU-CENTRAL-1.RDS.AMAZONAWS.COM",
                Endpoint::Rds,
                Some("eu-central-1"),
            ),
            (
                "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
                Endpoint::Dsql,
                Some("us-east-1"),
            ),
            (
                "X1.DSQL.EU-WEST-1.ON.AWS.",
                Endpoint::Dsql,
                Some("eu-west-1"),
            ),
            ("127.0.0.1", Endpoint::Other, None),
            ("postgres", Endpoint::Other, None),
            ("db.internal", Endpoint::Other, None),
            ("rds.amazonaws.com", Endpoint::Other, None),
            ("rds.amazonaws.com.evil.example", Endpoint::Other, None),
            ("myrds.amazonaws.com", Endpoint::Other, None),
            ("dsql.us-east-1.on.aws", Endpoint::Other, None),
            ("a.b.dsql.us-east-1.on.aws", Endpoint::Other, None),
            ("x.dsql.on.aws", Endpoint::Other, None),
            (
                "x.dsql.us-east-1.on.aws.evil.example",
                Endpoint::Other,
                None,
            ),
        ] {
            assert_eq!(kind(host), want, "{host}");
            assert_eq!(region(host).as_deref(), want_region, "{host}");
        }
    }
}
