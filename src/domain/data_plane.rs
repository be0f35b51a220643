//! The data plane: what the Worker asks a workspace's own database (its `Workspace` Durable
//! Object, `src/workspace.rs`) to do, the object's schema migrations, and the plan for moving
//! a workspace that still lives in the shared D1 into its object.
//!
//! The Worker's SQL is the same on D1 and on an object (both are SQLite, and an object holds
//! the same tables, with the one workspace in `workspaces`), so the object runs statements it
//! is sent: every batch in one transaction, as a D1 batch is.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One statement and its bound values (text, integers, reals, null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// The workspace a registry-backed request knows exists: the object may create its database
/// for it. A request that only carries a key's locator sends none, so a made-up locator never
/// creates storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Init {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Command {
    /// Statements run in one transaction; the object's database is created first when it has
    /// none and `init` says the workspace exists.
    Batch {
        statements: Vec<Statement>,
        init: Option<Init>,
    },
    /// The move begins: the database is created and refuses every batch until `MoveFinish`.
    MoveBegin {
        init: Init,
    },
    /// Rows copied by the move (only while it is being moved).
    MoveRows {
        statements: Vec<Statement>,
    },
    /// Counts read for the move's verification, whatever the state.
    Count {
        statements: Vec<Statement>,
    },
    MoveFinish,
    /// The move starts over: the object forgets everything.
    Destroy,
    /// Its state and the migrations applied, for the operator and the tests.
    Status,
}

/// How the object answers a command it cannot run (the HTTP status of its reply).
pub const ABSENT: u16 = 404;
pub const MOVING: u16 = 423;

/// The state of a workspace's database, as `Status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectState {
    /// No database: the workspace was never created here (or was deleted).
    Absent,
    /// Being filled by a move.
    Moving,
    Live,
}

impl ObjectState {
    pub fn stored(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Moving => "moving",
            Self::Live => "live",
        }
    }

    pub fn from_stored(s: &str) -> Self {
        match s {
            "moving" => Self::Moving,
            "live" => Self::Live,
            _ => Self::Absent,
        }
    }
}

/// One versioned change of an object's schema. Additive only (new tables, columns, indexes),
/// so code N−1 still runs against schema N while a deployment rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub id: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: [Migration; 3] = [
    Migration { id: 1, name: "initial", sql: include_str!("../../migrations/workspace/0001_initial.sql") },
    Migration { id: 2, name: "chat_age", sql: include_str!("../../migrations/workspace/0002_chat_age.sql") },
    Migration { id: 3, name: "lifecycle", sql: include_str!("../../migrations/workspace/0003_lifecycle.sql") },
];

/// The object's own bookkeeping (SQLite's `user_version` is not available in an object).
pub const BOOKKEEPING_SQL: &str = "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL); \
     CREATE TABLE IF NOT EXISTS _meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// The migrations not applied yet, in order.
pub fn pending(applied: &[u32]) -> Vec<Migration> {
    MIGRATIONS.iter().filter(|m| !applied.contains(&m.id)).copied().collect()
}

/// A table the move copies, parents before children (foreign keys hold at every step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    /// Selects the workspace's rows (`?1`) of this table.
    pub scope: &'static str,
    /// Whether `rowid` is copied as its own column (tables whose key is not an integer: their
    /// rowid is not a column). Kept so that orders that fall back on it stay the same.
    pub rowid: bool,
}

/// (`workspaces` is not copied: the move creates the object's one row from the registry, whose
/// own row has control-plane columns the object does not.)
pub const COPIED: [Copied; 8] = [
    Copied { table: "api_keys", scope: "workspace_id = ?1", rowid: true },
    Copied { table: "agents", scope: "workspace_id = ?1", rowid: true },
    Copied { table: "chats", scope: "workspace_id = ?1", rowid: true },
    Copied { table: "messages", scope: "chat_id IN (SELECT id FROM chats WHERE workspace_id = ?1)", rowid: true },
    Copied { table: "audit_log", scope: "workspace_id = ?1", rowid: true },
    Copied { table: "knowledge_records", scope: "workspace_id = ?1", rowid: false },
    Copied { table: "insights", scope: "workspace_id = ?1", rowid: true },
    Copied { table: "usage_daily", scope: "workspace_id = ?1", rowid: true },
];

/// Rows per page of the move: a page is one D1 read and one object write.
pub const MOVE_PAGE_ROWS: u32 = 100;

impl Copied {
    pub fn find(table: &str) -> Option<Self> {
        COPIED.iter().find(|c| c.table == table).copied()
    }

    /// The table after this one, if any.
    pub fn next(self) -> Option<Self> {
        let at = COPIED.iter().position(|c| c.table == self.table)?;
        COPIED.get(at + 1).copied()
    }

    /// One page of rows after `?2` (a rowid), at most `?3`, with their rowid as `_rowid`.
    pub fn page_sql(self) -> String {
        format!(
            "SELECT rowid AS _rowid, * FROM {} WHERE {} AND rowid > ?2 ORDER BY rowid LIMIT ?3",
            self.table, self.scope
        )
    }

    pub fn count_sql(self) -> String {
        format!("SELECT COUNT(*) AS n FROM {} WHERE {}", self.table, self.scope)
    }

    /// The statement that writes one copied row (its `_rowid` included when the table keeps
    /// it). Column names come from the row D1 returned, which comes from the schema, never
    /// from a request; `OR IGNORE` makes a page written twice (a retry) write nothing twice.
    pub fn insert(self, row: &serde_json::Map<String, Value>) -> Option<Statement> {
        let mut columns = Vec::with_capacity(row.len());
        let mut params = Vec::with_capacity(row.len());
        for (name, value) in row {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.is_empty() {
                return None;
            }
            match name.as_str() {
                "_rowid" if self.rowid => columns.push("rowid".to_owned()),
                "_rowid" => continue,
                other => columns.push(other.to_owned()),
            }
            params.push(value.clone());
        }
        if params.is_empty() || params.len() > 100 {
            return None;
        }
        let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
        let sql =
            format!("INSERT OR IGNORE INTO {} ({}) VALUES ({})", self.table, columns.join(", "), marks.join(", "));
        Some(Statement { sql, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn migrations_are_numbered_in_order_and_pending_skips_the_applied() {
        let ids: Vec<u32> = MIGRATIONS.iter().map(|m| m.id).collect();
        assert_eq!(ids, (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>());
        assert_eq!(pending(&[]).len(), MIGRATIONS.len());
        assert_eq!(pending(&[1]).iter().map(|m| m.id).collect::<Vec<_>>(), vec![2, 3]);
        assert!(pending(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn later_migrations_only_add() {
        for m in MIGRATIONS.iter().skip(1) {
            let upper = m.sql.to_uppercase();
            for word in ["DROP ", "RENAME", "DELETE ", "UPDATE "] {
                assert!(!upper.contains(word), "migration {} is not additive: {word}", m.name);
            }
        }
    }

    #[test]
    fn every_copied_table_is_in_the_object_schema_and_parents_come_first() {
        let schema = MIGRATIONS.iter().map(|m| m.sql).collect::<String>();
        for c in COPIED {
            assert!(schema.contains(&format!("CREATE TABLE {} (", c.table)), "{}", c.table);
        }
        let at = |t: &str| COPIED.iter().position(|c| c.table == t);
        assert!(at("workspaces").is_none() && at("api_keys") < at("chats"));
        assert!(at("chats") < at("messages"));
        assert_eq!(Copied::find("chats").and_then(Copied::next).map(|c| c.table), Some("messages"));
        assert_eq!(Copied::find("usage_daily").and_then(Copied::next), None);
    }

    #[test]
    fn a_copied_row_keeps_its_rowid_where_it_is_not_a_column() {
        let row = json!({"_rowid": 7, "id": "chat_1", "title": "Hi", "agent_id": null});
        let Some(Value::Object(row)) = Some(row) else { unreachable!() };
        let Some(chats) = Copied::find("chats") else { panic!("chats") };
        let s = chats.insert(&row).unwrap();
        assert!(s.sql.starts_with("INSERT OR IGNORE INTO chats (rowid, "), "{}", s.sql);
        assert_eq!(s.params.len(), 4);
        let Some(records) = Copied::find("knowledge_records") else { panic!("records") };
        let s = records.insert(&row).unwrap();
        assert!(!s.sql.contains("rowid"), "{}", s.sql);
        assert_eq!(s.params.len(), 3);
        let bad = json!({"id; DROP TABLE chats": 1});
        let Value::Object(bad) = bad else { unreachable!() };
        assert_eq!(chats.insert(&bad), None);
    }

    #[test]
    fn commands_have_a_stable_wire_shape() {
        let c = Command::Batch {
            statements: vec![Statement { sql: "SELECT ?1".into(), params: vec![json!(1)] }],
            init: None,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"op": "batch", "statements": [{"sql": "SELECT ?1", "params": [1]}], "init": null})
        );
        assert_eq!(serde_json::to_value(Command::MoveFinish).unwrap(), json!({"op": "moveFinish"}));
        for s in [ObjectState::Absent, ObjectState::Moving, ObjectState::Live] {
            assert_eq!(ObjectState::from_stored(s.stored()), s);
        }
    }
}
