//! What a failed login calls for besides a retry: one decision that the wait (`wait`),
//! the refresh check (`refresh::check`) and `doctor` share, so the three cannot drift.
//! The wait and the refresh carry the remedy out; doctor reports it ("would set the app
//! role up with the admin credentials") and passes where a start would succeed. Pure:
//! from the error's class and stage and what the run may do.

use std::time::Duration;

use super::classify::{Contact, Stage};
use super::pace::{Pace, Policy};
use crate::class::ErrorClass;

/// What the run may do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Admin credentials were given (`--admin-secret-*`).
    pub admin: bool,
    /// The bootstrap already ran in this wait (it runs once; a second failure of the same
    /// kind is taken at its word).
    pub bootstrapped: bool,
    /// The app database may be created (no `--no-create`).
    pub create: bool,
}

/// The remedy for a failed step, besides the retry pacing (`wait::verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Set the app role up with the admin credentials (role, password or `rds_iam`,
    /// database, `CONNECT`), then log in again.
    Bootstrap,
    /// Create the missing database as the app role, then log in again.
    Provision,
    /// Nothing to set up: retry or give up as the error's class says.
    None,
}

/// The classes a bootstrap can put right: the role is missing or has another password,
/// is not granted `rds_iam`, may not connect, or its database is missing.
fn bootstrap_fixes(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::PasswordRejected
            | ErrorClass::AuthorizationRejected
            | ErrorClass::TokenRejected
            | ErrorClass::MissingDatabase
    )
}

/// The remedy for a `class` failure at `stage` in `context`.
pub fn remedy(class: ErrorClass, stage: Stage, context: Context) -> Remedy {
    if stage != Stage::Login {
        return Remedy::None;
    }
    if context.admin && !context.bootstrapped && bootstrap_fixes(class) {
        return Remedy::Bootstrap;
    }
    if class == ErrorClass::MissingDatabase && context.create {
        return Remedy::Provision;
    }
    Remedy::None
}

/// What the loop should do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pause as the pace says, then try again.
    Retry(Pace),
    /// Try again at once without advancing the backoff (the next attempt does different
    /// work, e.g. creating the missing database).
    RetryNow,
    /// Give up.
    Fatal,
}

/// What a failed database step means for the wait, from its class, stage and contact
/// alone (the contact sets the pace of a retry). `elapsed` is the time since the wait
/// began (28000 is retried only early on).
pub fn verdict(
    class: ErrorClass,
    stage: Stage,
    contact: Contact,
    elapsed: Duration,
    policy: &Policy,
    create: bool,
) -> Verdict {
    let retry = Verdict::Retry(contact.into());
    match (class, stage) {
        (ErrorClass::Transient, _) | (ErrorClass::PasswordRejected, _) => retry,
        (ErrorClass::AuthorizationRejected, _) if elapsed < policy.authorization_window => retry,
        (ErrorClass::MissingDatabase, Stage::Login) if create => Verdict::RetryNow,
        // --no-create: somebody else (a migration job, a DBA) is expected to create it.
        (ErrorClass::MissingDatabase, Stage::Login) => retry,
        _ => Verdict::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_sets_up_what_it_can_once_and_only_after_a_login() {
        let admin = Context {
            admin: true,
            bootstrapped: false,
            create: true,
        };
        let r = |class, stage, context| remedy(class, stage, context);
        assert_eq!(
            r(ErrorClass::PasswordRejected, Stage::Login, admin),
            Remedy::Bootstrap
        );
        assert_eq!(
            r(ErrorClass::MissingDatabase, Stage::Login, admin),
            Remedy::Bootstrap
        );
        let after = Context {
            bootstrapped: true,
            ..admin
        };
        assert_eq!(
            r(ErrorClass::MissingDatabase, Stage::Login, after),
            Remedy::Provision
        );
        assert_eq!(
            r(ErrorClass::PasswordRejected, Stage::Login, after),
            Remedy::None
        );
        assert_eq!(
            r(ErrorClass::PasswordRejected, Stage::Bootstrap, admin),
            Remedy::None
        );
        assert_eq!(r(ErrorClass::Transient, Stage::Login, admin), Remedy::None);
        let no_create = Context {
            admin: false,
            bootstrapped: false,
            create: false,
        };
        assert_eq!(
            r(ErrorClass::MissingDatabase, Stage::Login, no_create),
            Remedy::None
        );
    }

    #[test]
    fn verdicts_follow_the_error_table() {
        let p = Policy::default();
        let early = Duration::from_secs(1);
        let v = |class, stage, contact, create| verdict(class, stage, contact, early, &p, create);
        use ErrorClass as C;
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Refused, true),
            Verdict::Retry(Pace::Probe)
        );
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Answered, true),
            Verdict::Retry(Pace::Answered)
        );
        assert_eq!(
            v(C::Transient, Stage::Login, Contact::Unknown, true),
            Verdict::Retry(Pace::Backoff)
        );
        assert_eq!(
            v(C::MissingDatabase, Stage::Login, Contact::Answered, true),
            Verdict::RetryNow
        );
        assert_eq!(
            v(C::MissingDatabase, Stage::Login, Contact::Answered, false),
            Verdict::Retry(Pace::Answered)
        );
        assert_eq!(
            v(
                C::MissingDatabase,
                Stage::Provision,
                Contact::Answered,
                true
            ),
            Verdict::Fatal
        );
        for fatal in [C::NoPrivilege, C::TlsVerification, C::TlsRequired, C::Other] {
            assert_eq!(
                v(fatal, Stage::Login, Contact::Answered, true),
                Verdict::Fatal
            );
        }
        let late = p.authorization_window;
        assert_eq!(
            verdict(
                C::AuthorizationRejected,
                Stage::Login,
                Contact::Answered,
                late,
                &p,
                true
            ),
            Verdict::Fatal
        );
    }
}
