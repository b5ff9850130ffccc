//! Least privilege enforced by the database: each node logs in with a role of its own
//! (`oracle db-role --role NAME --node ADDRESS`), and PostgreSQL itself refuses what the lease
//! rules refuse, whatever SQL that role sends:
//!
//! - `node_roles` maps a login role to the one node address it acts as;
//! - row-level security on `heartbeat`: a node role writes only its own row (and deletes none:
//!   a node that stops sets its row to `-infinity`, see `store::lease`);
//! - the trigger `heartbeat_rules` bounds a lease to `lease_rules.max_lease` past `now()`,
//!   keeps a term's start while it is renewed and ends it after `max_term`, lets a node take
//!   the lease only when no other holds it, and not again within `retake_after` of its own
//!   term's end while another live node may take it (so a term cannot be stretched by
//!   releasing and taking at once);
//! - row-level security on `prices`: a node role inserts only rows `written_by` itself, and
//!   only while its heartbeat is the live writer's (the greatest `timestamp`, in the future).
//!
//! The admin (the tables' owner) is not bound by row-level security and not checked by the
//! trigger: it is trusted by definition, and readers verify every row anyway. `term_ended_at`
//! is kept by the trigger for every writer, so it cannot be forged.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE node_roles (
    role_name TEXT PRIMARY KEY,
    node_address TEXT NOT NULL UNIQUE
);

CREATE TABLE lease_rules (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    max_lease INTERVAL NOT NULL DEFAULT '60 seconds',
    max_term INTERVAL NOT NULL DEFAULT '10 minutes',
    retake_after INTERVAL NOT NULL DEFAULT '15 seconds'
);
INSERT INTO lease_rules DEFAULT VALUES;

ALTER TABLE heartbeat ADD COLUMN term_ended_at TIMESTAMPTZ;

-- The node the current role acts as; NULL for any other role (node roles may read
-- node_roles: it names roles and addresses, nothing secret).
CREATE FUNCTION oracle_node_address() RETURNS TEXT
    LANGUAGE sql STABLE SET search_path = public, pg_temp
    AS $$ SELECT node_address FROM node_roles WHERE role_name = current_user $$;

CREATE FUNCTION heartbeat_rules() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    me TEXT := oracle_node_address();
    rules lease_rules%ROWTYPE;
    last_term_end TIMESTAMPTZ;
BEGIN
    -- A term ends when the row stops holding it or starts another; kept for every writer.
    IF TG_OP = 'UPDATE' THEN
        NEW.term_ended_at := CASE
            WHEN OLD.lease_since IS NOT NULL AND NEW.lease_since IS DISTINCT FROM OLD.lease_since
                THEN now()
            ELSE OLD.term_ended_at
        END;
    ELSE
        NEW.term_ended_at := NULL;
    END IF;
    IF me IS NULL THEN
        RETURN NEW;
    END IF;
    -- Row-level security says the same; this says it first, and plainly.
    IF NEW.node_address IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'role % writes only the heartbeat of node %', current_user, me
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO rules FROM lease_rules;
    IF NEW."timestamp" > now() + rules.max_lease THEN
        RAISE EXCEPTION 'a heartbeat may reach at most % past now() (lease_rules.max_lease)',
            rules.max_lease USING ERRCODE = 'check_violation';
    END IF;
    IF NEW."timestamp" <= now() THEN
        RETURN NEW;
    END IF;
    -- An upsert's INSERT half is checked in its UPDATE half when the row exists.
    IF TG_OP = 'INSERT'
        AND EXISTS (SELECT 1 FROM heartbeat WHERE node_address = NEW.node_address) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD."timestamp" > now() AND OLD.lease_since IS NOT NULL THEN
        -- Renewing: the term keeps its start, and ends at max_term.
        NEW.lease_since := OLD.lease_since;
        NEW.term_ended_at := OLD.term_ended_at;
        IF now() - OLD.lease_since > rules.max_term THEN
            RAISE EXCEPTION 'the term that began at % has passed lease_rules.max_term (%)',
                OLD.lease_since, rules.max_term USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    -- Taking.
    IF EXISTS (SELECT 1 FROM heartbeat
               WHERE node_address <> NEW.node_address AND "timestamp" > now()) THEN
        RAISE EXCEPTION 'another node holds the lease' USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        last_term_end := CASE WHEN OLD.lease_since IS NOT NULL THEN now()
                              ELSE OLD.term_ended_at END;
    END IF;
    -- Only while another live node may take it instead (its own term did not just end).
    IF last_term_end > now() - rules.retake_after
        AND EXISTS (SELECT 1 FROM heartbeat
                    WHERE node_address <> NEW.node_address
                      AND "timestamp" > now() - rules.retake_after
                      AND lease_since IS NULL
                      AND (term_ended_at IS NULL
                           OR term_ended_at <= now() - rules.retake_after)) THEN
        RAISE EXCEPTION 'this node''s term ended at %: another live node takes the lease first (lease_rules.retake_after %)',
            last_term_end, rules.retake_after USING ERRCODE = 'check_violation';
    END IF;
    NEW.lease_since := now();
    RETURN NEW;
END $$;

CREATE TRIGGER heartbeat_rules BEFORE INSERT OR UPDATE ON heartbeat
    FOR EACH ROW EXECUTE FUNCTION heartbeat_rules();

ALTER TABLE heartbeat ENABLE ROW LEVEL SECURITY;
CREATE POLICY heartbeat_read ON heartbeat FOR SELECT USING (true);
CREATE POLICY heartbeat_insert_own ON heartbeat FOR INSERT
    WITH CHECK (node_address = oracle_node_address());
CREATE POLICY heartbeat_update_own ON heartbeat FOR UPDATE
    USING (node_address = oracle_node_address())
    WITH CHECK (node_address = oracle_node_address());

ALTER TABLE prices ENABLE ROW LEVEL SECURITY;
CREATE POLICY prices_read ON prices FOR SELECT USING (true);
CREATE POLICY prices_insert_by_the_writer ON prices FOR INSERT WITH CHECK (
    written_by = oracle_node_address()
    AND written_by = (SELECT node_address FROM heartbeat WHERE "timestamp" > now()
                      ORDER BY "timestamp" DESC, node_address DESC LIMIT 1)
);
"#;

const DOWN: &str = r#"
DROP POLICY prices_insert_by_the_writer ON prices;
DROP POLICY prices_read ON prices;
ALTER TABLE prices DISABLE ROW LEVEL SECURITY;
DROP POLICY heartbeat_update_own ON heartbeat;
DROP POLICY heartbeat_insert_own ON heartbeat;
DROP POLICY heartbeat_read ON heartbeat;
ALTER TABLE heartbeat DISABLE ROW LEVEL SECURITY;
DROP TRIGGER heartbeat_rules ON heartbeat;
DROP FUNCTION heartbeat_rules();
DROP FUNCTION oracle_node_address();
ALTER TABLE heartbeat DROP COLUMN term_ended_at;
DROP TABLE lease_rules;
DROP TABLE node_roles;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
