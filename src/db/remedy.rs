//! What a failed login calls for besides a retry: one decision that the wait (`wait`),
//! the refresh check (`refresh::check`) and `doctor` share, so the three cannot drift.
//! The wait and the refresh carry the remedy out; doctor reports it ("would set the app
//! role up with the admin credentials") and passes where a start would succeed. Pure:
//! from the error's class and stage and what the run may do.

use super::connect::Stage;
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
}
