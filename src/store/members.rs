//! The `signers` table: who is a member. Managed with `oracle signers`, read by every node (the
//! heartbeat carries a digest of the list, so a node re-reads it only when it changed), by the
//! writer's flush and by `oracle verify`.

use std::collections::HashMap;

use alloy_primitives::Address;
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Store, StoreError};

/// The members right now (addresses not revoked) and since when, in Unix seconds rounded down
/// (the resolution of `observed_at`).
pub(super) const CURRENT_MEMBERS_SQL: &str = "SELECT address, \
     floor(extract(epoch FROM added_at))::bigint FROM signers WHERE revoked_at IS NULL";

/// A digest of the current member list: changes whenever a member is added or removed.
pub(super) const MEMBERS_VERSION_SQL: &str = "SELECT md5(coalesce(string_agg(address, ',' \
     ORDER BY address), '')) FROM signers WHERE revoked_at IS NULL";

/// One row of `signers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerRow {
    pub address: Address,
    pub name: String,
    pub added_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SignerRow {
    /// Whether the signer was a member when a price was observed at `observed_at`. Observation
    /// times are whole seconds (rounded down), so membership is compared at that resolution:
    /// a price observed in the very second its signer was added counts.
    pub fn member_at(&self, observed_at: DateTime<Utc>) -> bool {
        self.added_at.trunc_subsecs(0) <= observed_at
            && self.revoked_at.is_none_or(|revoked| observed_at < revoked)
    }
}

/// What `oracle signers add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// A removed member, made a member again. The table keeps one period per address: the
    /// first `added_at` stays (so rows from its first period still verify), and the gap between
    /// removal and readmission is not recorded.
    Readmitted,
    AlreadyMember,
}

impl Store {
    /// Makes `address` a member (again). A current member is left as it is; a removed one keeps
    /// its first `added_at` (see [`Added::Readmitted`]).
    pub async fn add_signer(&self, address: &Address, name: &str) -> Result<Added, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"WITH before AS (SELECT revoked_at FROM signers WHERE address = $1),
                    upsert AS (
                        INSERT INTO signers (address, name) VALUES ($1, $2)
                        ON CONFLICT (address) DO UPDATE
                            SET name = CASE WHEN EXCLUDED.name = '' THEN signers.name
                                            ELSE EXCLUDED.name END,
                                revoked_at = NULL
                        RETURNING address)
               SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM before) THEN 'new'
                           WHEN (SELECT revoked_at FROM before) IS NULL THEN 'member'
                           ELSE 'readmitted' END
               FROM upsert"#,
            [address.to_checksum(None).into(), name.into()],
        );
        let row = self
            .timed("add signer", self.db().query_one_raw(statement))
            .await?
            .ok_or(StoreError::Unexpected {
                what: "add signer",
                detail: "no row".into(),
            })?;
        let outcome = row
            .try_get_by_index::<String>(0)
            .map_err(StoreError::db("add signer"))?;
        Ok(match outcome.as_str() {
            "new" => Added::New,
            "readmitted" => Added::Readmitted,
            _ => Added::AlreadyMember,
        })
    }

    /// Revokes `address`: its signatures stop counting now. Returns whether it was a member.
    pub async fn remove_signer(&self, address: &Address) -> Result<bool, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE signers SET revoked_at = now() WHERE address = $1 AND revoked_at IS NULL",
            [address.to_checksum(None).into()],
        );
        let result = self
            .timed("remove signer", self.db().execute_raw(statement))
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Every row, members and revoked, by address.
    pub async fn signers(&self) -> Result<Vec<SignerRow>, StoreError> {
        let statement = Statement::from_string(
            DbBackend::Postgres,
            "SELECT address, name, added_at, revoked_at FROM signers ORDER BY address",
        );
        let rows = self
            .timed("read signers", self.db().query_all_raw(statement))
            .await?;
        rows.iter()
            .map(|row| {
                let read = || -> Result<_, sea_orm::DbErr> {
                    Ok((
                        row.try_get_by_index::<String>(0)?,
                        row.try_get_by_index::<String>(1)?,
                        row.try_get_by_index::<DateTime<Utc>>(2)?,
                        row.try_get_by_index::<Option<DateTime<Utc>>>(3)?,
                    ))
                };
                let (address, name, added_at, revoked_at) =
                    read().map_err(StoreError::db("read signers"))?;
                Ok(SignerRow {
                    address: parse_address("read signers", &address)?,
                    name,
                    added_at,
                    revoked_at,
                })
            })
            .collect()
    }

    /// The current members and since when (Unix seconds, rounded down).
    pub async fn current_members(&self) -> Result<HashMap<Address, u64>, StoreError> {
        let statement = Statement::from_string(DbBackend::Postgres, CURRENT_MEMBERS_SQL);
        let rows = self
            .timed("read members", self.db().query_all_raw(statement))
            .await?;
        read_members("read members", &rows)
    }
}

/// Rows of [`CURRENT_MEMBERS_SQL`].
pub(super) fn read_members(
    what: &'static str,
    rows: &[sea_orm::QueryResult],
) -> Result<HashMap<Address, u64>, StoreError> {
    rows.iter()
        .map(|row| {
            let text = row
                .try_get_by_index::<String>(0)
                .map_err(StoreError::db(what))?;
            let since = row
                .try_get_by_index::<i64>(1)
                .map_err(StoreError::db(what))?;
            Ok((parse_address(what, &text)?, since.max(0) as u64))
        })
        .collect()
}

fn parse_address(what: &'static str, text: &str) -> Result<Address, StoreError> {
    text.parse().map_err(|err| StoreError::Unexpected {
        what,
        detail: format!("signer {text:?} is not an address: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_a_half_open_period() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let row = SignerRow {
            address: Address::ZERO,
            name: String::new(),
            added_at: at(100),
            revoked_at: Some(at(200)),
        };
        assert!(!row.member_at(at(99)));
        assert!(row.member_at(at(100)));
        let added_mid_second = SignerRow {
            added_at: at(100) + chrono::Duration::milliseconds(700),
            ..row.clone()
        };
        assert!(
            added_mid_second.member_at(at(100)),
            "observed in the same (rounded-down) second"
        );
        assert!(!added_mid_second.member_at(at(99)));
        assert!(row.member_at(at(199)));
        assert!(!row.member_at(at(200)));
        let current = SignerRow {
            revoked_at: None,
            ..row
        };
        assert!(current.member_at(at(1_000_000)));
    }
}
