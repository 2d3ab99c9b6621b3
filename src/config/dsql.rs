//! Aurora DSQL's rules, checked before anything runs: no secret (DSQL has no passwords),
//! the one database `postgres`, and the admin set-up only as DSQL does it — the `admin`
//! role (the one `DbConnectAdmin` signs for) mapping the app role to an IAM ARN with
//! `AWS IAM GRANT` (AWS DSQL User Guide, "Using database roles and IAM authentication").

use crate::cli::PrepareArgs;
use crate::endpoint::{self, Endpoint};
use crate::secret::Source;

use super::{ConfigError, given};

/// DSQL's predefined admin role, the only one `DbConnectAdmin` tokens log in as.
const DSQL_ADMIN: &str = "admin";

/// Whether this is Aurora DSQL: `--dsql`, or the host (`--host`, else `PGHOST` for the
/// libpq source) is a DSQL endpoint. Refuses what DSQL cannot do; `--dsql-grant-arn`
/// outside DSQL's admin set-up too.
pub(super) fn dsql(
    args: &PrepareArgs,
    env: impl Fn(&str) -> Option<String>,
    source: &Source,
) -> Result<bool, ConfigError> {
    let libpq = *source == Source::Libpq;
    let host = args
        .host
        .clone()
        .or_else(|| env("PGHOST").filter(|_| libpq));
    if !args.dsql && host.is_none_or(|h| endpoint::kind(&h) != Endpoint::Dsql) {
        return match args.dsql_grant_arn {
            Some(_) => Err(ConfigError::DsqlGrantAlone),
            None => Ok(false),
        };
    }
    if !libpq {
        return Err(ConfigError::DsqlSecret(source.to_string()));
    }
    let admin_secret = given(
        &args.admin_secret_id,
        &args.admin_secret_env,
        &args.admin_secret_file,
    );
    if admin_secret.is_some() {
        return Err(ConfigError::DsqlAdmin);
    }
    match (&args.admin_iam_user, &args.dsql_grant_arn) {
        (None, None) => {}
        (None, Some(_)) => return Err(ConfigError::DsqlGrantAlone),
        (Some(user), _) if user != DSQL_ADMIN => {
            return Err(ConfigError::DsqlAdminUser(user.clone()));
        }
        (Some(_), None) => return Err(ConfigError::DsqlGrantMissing),
        (Some(_), Some(arn)) => check_arn(arn)?,
    }
    match args.database.clone().or_else(|| env("PGDATABASE")) {
        Some(d) if d != "postgres" => Err(ConfigError::DsqlDatabase(d)),
        _ => Ok(true),
    }
}

/// An IAM role or user ARN, `arn:PARTITION:iam::ACCOUNT:role/NAME` (a path allowed), in
/// the characters IAM allows in names and paths: it is written into `AWS IAM GRANT` as a
/// string literal. A session's `arn:…:sts::…:assumed-role/…` is refused with its reason.
fn check_arn(arn: &str) -> Result<(), ConfigError> {
    let bad = |why: &'static str| Err(ConfigError::DsqlGrantArn(arn.to_string(), why));
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return bad("an ARN has six ':'-separated parts");
    };
    if service == "sts" && resource.starts_with("assumed-role/") {
        return bad(
            "that is a session's ARN (what GetCallerIdentity returns); give the role's own, arn:aws:iam::ACCOUNT:role/NAME",
        );
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
    };
    let (kind, name) = resource.split_once('/').unwrap_or((resource, ""));
    if prefix != "arn"
        || partition.is_empty()
        || !partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
        || service != "iam"
        || !region.is_empty()
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
        || !matches!(kind, "role" | "user")
        || !name_ok(name)
        || name.ends_with('/')
    {
        return bad("expected arn:aws:iam::ACCOUNT:role/NAME (or user/NAME), in IAM's characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_arns_are_checked_before_they_reach_sql() {
        for ok in [
            "arn:aws:iam::123456789012:role/app-task",
            "arn:aws:iam::123456789012:role/service-role/app_task+x=1,y.z@w",
            "arn:aws-cn:iam::123456789012:user/deployer",
            "arn:aws-us-gov:iam::123456789012:role/a",
        ] {
            assert!(check_arn(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "app-task",
            "arn:aws:sts::123456789012:assumed-role/app-task/session",
            "arn:aws:iam::123456789012:role/app'; DROP ROLE admin; --",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a/",
            "arn:aws:iam::12345678901:role/a",
            "arn:aws:iam:us-east-1:123456789012:role/a",
            "arn:aws:iam::123456789012:group/a",
            "arn:aws:dsql:us-east-1:123456789012:cluster/abc",
            "arn:AWS:iam::123456789012:role/a",
            "arn:aws:iam::123456789012:role/a b",
        ] {
            let e = check_arn(bad).expect_err(bad);
            assert!(matches!(e, ConfigError::DsqlGrantArn(..)), "{bad}: {e}");
        }
        let session = "arn:aws:sts::123456789012:assumed-role/app-task/session";
        let e = check_arn(session).expect_err("session");
        assert!(e.to_string().contains("session's ARN"), "{e}");
    }
}
