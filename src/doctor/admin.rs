//! doctor's admin step: whether the admin credentials log in and may set the app role up.

use crate::class::ErrorClass;
use crate::config::Config;
use crate::db::admin::{AdminError, AppLogin};
use crate::db::bootstrap::check_roles;
use crate::db::hint;
use crate::display::chain;
use crate::secret::{ADMIN_SHAPE, Target};

use super::database::has_attribute;
use super::report::Outcome;

/// With admin credentials: whether they log in and may set the app role up.
pub(super) async fn admin(config: &Config, app: &Target) -> (Outcome, Option<()>) {
    let Some(mut login) = config.admin_login() else {
        let detail = "no admin credentials given (none needed)";
        return (Outcome::Ok(detail.into()), Some(()));
    };
    let maintenance = &config.provisioning.maintenance_database;
    let admin = match login.target(app, maintenance).await {
        Ok(t) => t,
        Err(e) => {
            let hint = match e {
                AdminError::Secret(_) => ADMIN_SHAPE,
                AdminError::Iam(_) => hint::ADMIN_TOKEN,
            };
            return (Outcome::fail(e.class(), chain(&e), hint), None);
        }
    };
    // What every start with an admin secret checks first (the wait refuses to start).
    let app_login = login.app_login(config.iam.is_some());
    if let Err(e) = check_roles(&admin, app, app_login) {
        let hint = "the app secret must name the app's own role, not the admin or a reserved name";
        return (Outcome::fail(e.class(), chain(&e), hint), None);
    }
    let tls = config.tls.for_host(&admin.host);
    if let AppLogin::Dsql { arn } = app_login {
        // DSQL's admin may create roles by definition: whether its token logs in is the test.
        return match has_attribute(&admin, maintenance, tls, "rolcanlogin").await {
            Ok(_) => {
                let detail = format!(
                    "admin logs in: it can create the role {} and map it to {arn} (AWS IAM GRANT)",
                    app.user
                );
                (Outcome::Ok(detail), Some(()))
            }
            Err((class, message)) => (Outcome::fail(class, message, hint::ADMIN_TOKEN), None),
        };
    }
    match has_attribute(&admin, maintenance, tls, "rolcreaterole").await {
        Ok(true) => {
            let detail = format!(
                "{} logs in and has CREATEROLE: it can set the app role up",
                admin.user
            );
            (Outcome::Ok(detail), Some(()))
        }
        Ok(false) => {
            let detail = format!("{} lacks CREATEROLE", admin.user);
            let hint =
                "the admin secret must be the master user's (RDS/Aurora grants it CREATEROLE)";
            (Outcome::fail(ErrorClass::NoPrivilege, detail, hint), None)
        }
        Err((class, message)) => {
            let hint = "the admin secret's password is not the admin user's: an RDS rotation the injected value predates?";
            (Outcome::fail(class, message, hint), None)
        }
    }
}
