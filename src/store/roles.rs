//! The least-privilege database role each node logs in as (`oracle db-role --node`), created
//! by an admin.
//!
//! A node needs to add prices and keep its heartbeat, and to read who the members are; it never
//! needs to change members, rewrite or delete prices, or change the schema. Each node has a
//! role of its own, bound to its address in `node_roles`, and the database's row-level security
//! and lease trigger (migration `m20261207_000011_node_roles`) hold it to its own heartbeat row,
//! the lease rules, and inserting prices only while it is the writer. With its role a stolen
//! node credential can do no more than that node does.

use alloy_primitives::Address;
use sea_orm::{ConnectOptions, ConnectionTrait, DbBackend, Statement, TransactionTrait};

use super::{DbSettings, StoreError, connect_pool, describe, within};

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
         public.seaql_migrations, public.node_roles, public.lease_rules FROM %I', $1)",
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
    // UPDATE also covers the flush's `LOCK TABLE heartbeat IN SHARE MODE`. No DELETE: a node
    // that stops sets its row to `-infinity`, so the end of its last term is remembered.
    (
        "grant heartbeat",
        "SELECT format('GRANT SELECT, INSERT, UPDATE ON TABLE public.heartbeat TO %I', $1)",
    ),
    (
        "grant lease rules",
        "SELECT format('GRANT SELECT ON TABLE public.lease_rules, public.node_roles TO %I', $1)",
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

/// Binds a role to the node it acts as; one role per node.
const BIND_SQL: &str = "INSERT INTO node_roles (role_name, node_address) VALUES ($1, $2) \
     ON CONFLICT (role_name) DO UPDATE SET node_address = EXCLUDED.node_address";

/// Creates `role` (or updates its password) with LOGIN for the node `node`, and grants it
/// exactly what a node needs: CONNECT on the database, USAGE on `public`, SELECT and INSERT on
/// `prices`, SELECT, INSERT and UPDATE on `heartbeat`, SELECT on `signers`, `lease_rules` and `node_roles`;
/// row-level security narrows those to the node's own heartbeat and to prices it writes as the
/// writer. Run with the admin credential, after the migrations. Safe to run again.
pub async fn ensure_node_role(
    settings: &DbSettings,
    role: &str,
    password: &str,
    node: &Address,
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
        let bind = Statement::from_sql_and_values(
            DbBackend::Postgres,
            BIND_SQL,
            [role.into(), node.to_checksum(None).into()],
        );
        within(
            settings.timeout,
            "bind the role to its node",
            txn.execute_raw(bind),
        )
        .await
        .map_err(|err| match err {
            StoreError::Db { what, error } if describe(&error).contains("node_address") => {
                StoreError::Unexpected {
                    what,
                    detail: format!("{node} already has another role: one role per node"),
                }
            }
            other => other,
        })?;
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
