//! The least-privilege database role nodes log in as (`oracle db-role`), created by an admin.
//!
//! A node needs to add prices and keep its heartbeat, and to read who the members are; it never
//! needs to change members, rewrite or delete prices, or change the schema. With this role a
//! stolen node credential can do no more than a node does.

use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, Statement, TransactionTrait};

use super::{DbSettings, StoreError, connect_pool, within};

/// Why a role name is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid role name {0:?}: use 1 to 63 lowercase letters, digits or '_', not starting with a digit"
)]
pub struct BadRoleName(pub String);

/// A role name PostgreSQL takes as is: `^[a-z_][a-z0-9_]{0,62}$`.
pub fn check_role_name(name: &str) -> Result<(), BadRoleName> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(BadRoleName(name.to_owned()))
    }
}

/// Each statement is built by the server with `format()`: `%I` quotes the role and database
/// names as identifiers and `%L` the password as a literal, so no value is ever spliced in here.
/// `$1` is the role, `$2` the password.
const STATEMENTS: &[(&str, &str)] = &[
    (
        "create role",
        "SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) \
         THEN 'ALTER ROLE %I WITH LOGIN PASSWORD %L' \
         ELSE 'CREATE ROLE %I WITH LOGIN PASSWORD %L' END, $1, $2)",
    ),
    // Start from nothing, so running it again after a change of mind leaves exactly this set.
    (
        "revoke table privileges",
        "SELECT format('REVOKE ALL ON TABLE public.prices, public.heartbeat, public.signers, \
         public.seaql_migrations FROM %I', $1)",
    ),
    (
        "grant connect",
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1)",
    ),
    (
        "grant schema usage",
        "SELECT format('GRANT USAGE ON SCHEMA public TO %I', $1)",
    ),
    (
        "grant prices",
        "SELECT format('GRANT SELECT, INSERT ON TABLE public.prices TO %I', $1)",
    ),
    // UPDATE and DELETE also cover the flush's `LOCK TABLE heartbeat IN SHARE MODE`.
    (
        "grant heartbeat",
        "SELECT format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.heartbeat TO %I', $1)",
    ),
    (
        "grant signers",
        "SELECT format('GRANT SELECT ON TABLE public.signers TO %I', $1)",
    ),
    // Before PostgreSQL 15 every role may create tables in `public`; 15 and later already
    // refuse it. Only the admin, who owns the schema, needs to.
    (
        "revoke create on public",
        "SELECT 'REVOKE CREATE ON SCHEMA public FROM PUBLIC'",
    ),
];

/// Creates `role` (or updates its password) with LOGIN, and grants it exactly what a node
/// needs: CONNECT on the database, USAGE on `public`, SELECT and INSERT on `prices`, SELECT,
/// INSERT, UPDATE and DELETE on `heartbeat`, SELECT on `signers`. Run with the admin credential,
/// after the migrations. Safe to run again.
pub async fn ensure_node_role(
    settings: &DbSettings,
    role: &str,
    password: &str,
) -> Result<(), StoreError> {
    check_role_name(role).map_err(|err| StoreError::Unexpected {
        what: "role name",
        detail: err.to_string(),
    })?;
    let url = super::primary::primary_url(&settings.url, settings.timeout).await?;
    let mut options = ConnectOptions::new(url.expose());
    options
        .max_connections(1)
        .connect_timeout(settings.timeout)
        .acquire_timeout(settings.timeout)
        .set_application_name("price-oracle db-role")
        // The statements carry the password: never log them, whatever the log level.
        .sqlx_logging(false);
    let db = within(settings.timeout, "connect", connect_pool(&url, options)).await?;
    // One transaction: the role is either fully set up or left as it was.
    let result = async {
        let txn = within(settings.timeout, "begin", db.begin()).await?;
        for (what, build) in STATEMENTS {
            let query = Statement::from_sql_and_values(
                DbBackend::Postgres,
                *build,
                [role.into(), password.into()],
            );
            let row = within(settings.timeout, what, txn.query_one_raw(query))
                .await?
                .ok_or_else(|| StoreError::Unexpected {
                    what,
                    detail: "format() returned no row".to_owned(),
                })?;
            let sql: String = row
                .try_get_by_index(0)
                .map_err(|error| StoreError::Db { what, error })?;
            within(settings.timeout, what, txn.execute_unprepared(&sql)).await?;
        }
        within(settings.timeout, "commit", txn.commit()).await
    }
    .await;
    let _ = db.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for good in ["oracle_node", "_x", "n1", &"a".repeat(63)] {
            assert!(check_role_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1node",
            "Node",
            "node-1",
            "a\"b",
            "x; DROP TABLE prices",
            &"a".repeat(64),
            "nœud",
        ] {
            let err = check_role_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid role name"), "{bad}: {err}");
        }
    }
}
