//! Versioned schema migrations, for both backends: each backend lists its
//! migrations in order (version N is the N-th), records the version it
//! reached (SQLite: `PRAGMA user_version`; PostgreSQL: the
//! `schema_version` table) and applies the missing ones at open, in one
//! transaction. A database newer than this binary is refused, naming both
//! versions, before anything is written.

use crate::StoreError;

/// One schema step: `step` is the SQL (PostgreSQL: run as one batch) or
/// the function (SQLite) that applies it inside the migration's
/// transaction.
pub struct Migration<S = &'static str> {
    /// What it adds (shown in logs and errors).
    pub what: &'static str,
    pub step: S,
}

/// The error for a database whose schema is newer than this binary's.
pub(crate) fn newer_schema(store: &str, found: i64, known: usize) -> StoreError {
    StoreError::Backend {
        path: store.to_string(),
        message: format!(
            "the schema is at version {found}, newer than this binary knows (version {known}); \
             run a pointsman at least as new as the one that wrote it"
        ),
    }
}

/// The migrations a database at `found` still needs (refusing a newer one).
pub(crate) fn pending<'a, S>(
    store: &str,
    migrations: &'a [Migration<S>],
    found: i64,
) -> Result<&'a [Migration<S>], StoreError> {
    let known = migrations.len();
    if found < 0 || found as usize > known {
        return Err(newer_schema(store, found, known));
    }
    Ok(&migrations[found as usize..])
}
