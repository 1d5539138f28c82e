//! Tests of what is PostgreSQL's own (one transaction per batch, schema
//! versions, concurrent start-up, URLs). What every backend promises is
//! tested on both in crate::tests::behaviour. They need a server:
//! scripts/with-postgres gives one.

use super::*;
use crate::tests::{all, decision, mixed_batch, postgres};

#[test]
fn a_database_name_replaces_the_urls_own() {
    assert_eq!(
        with_dbname("postgresql:///postgres?host=/tmp/x&user=postgres", "t1"),
        "postgresql:///t1?host=/tmp/x&user=postgres"
    );
    assert_eq!(
        with_dbname("postgres://u:p@h:5/db", "t2"),
        "postgres://u:p@h:5/t2"
    );
    assert_eq!(with_dbname("postgres://h", "t3"), "postgres://h/t3");
}

#[test]
fn passwords_are_redacted_from_shown_urls() {
    assert_eq!(
        redact("postgres://app:s3cret@db:5432/pointsman"),
        "postgres://app:***@db:5432/pointsman"
    );
    assert_eq!(
        redact("postgresql://app@db/p?password=x&sslmode=disable"),
        "postgresql://app@db/p?password=***&sslmode=disable"
    );
    assert_eq!(
        redact("postgres:///p?host=/run/postgresql"),
        "postgres:///p?host=/run/postgresql"
    );
}

// Issue 15: RouteBatch writes all its rows in one transaction. Every row
// a transaction writes carries its id (xmin): one batch, one xmin. The
// batch holds a refused row and a duplicate, which must not split it.
#[test]
fn a_batch_of_decisions_is_one_transaction() {
    let Some(b) = postgres("pg_batch_one_transaction") else {
        return;
    };
    let s = PostgresStore::open_with(&b.url, 2).unwrap();
    let results = s.append_decisions(&mixed_batch());
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 18);
    let mut conn = s.conn().unwrap();
    let xmins: i64 = conn
        .query_one("SELECT COUNT(DISTINCT xmin::text) FROM decisions", &[])
        .unwrap()
        .get(0);
    assert_eq!(xmins, 1, "18 rows written by {xmins} transactions");
}

// A row PostgreSQL itself refuses (text with a NUL byte, which SQLite
// would take) fails alone: the rest of its batch is retried row by row.
#[test]
fn a_row_the_server_refuses_fails_alone() {
    let Some(b) = postgres("pg_row_refused_alone") else {
        return;
    };
    let s = PostgresStore::open_with(&b.url, 2).unwrap();
    let mut batch: Vec<LoggedDecision> = (0..5).map(|i| decision(&format!("n{i}"), None)).collect();
    batch[2].prompt = Some("nul \0 byte".into());
    let results = s.append_decisions(&batch);
    assert!(
        matches!(results[2], Err(StoreError::Backend { .. })),
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
    assert_eq!(all(&s).len(), 4);
}

#[test]
fn a_database_newer_than_the_binary_is_refused_naming_both_versions() {
    let Some(b) = postgres("pg_newer_schema") else {
        return;
    };
    drop(PostgresStore::open_with(&b.url, 1).unwrap());
    let future = schema::MIGRATIONS.len() as i32 + 2;
    let config: postgres::Config = b.url.parse().unwrap();
    let mut c = config.connect(NoTls).unwrap();
    c.execute("UPDATE schema_version SET version = $1", &[&future])
        .unwrap();
    let e = PostgresStore::open_with(&b.url, 1)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains(&format!("schema is at version {future}"))
            && e.contains(&format!(
                "this binary knows (version {})",
                schema::MIGRATIONS.len()
            )),
        "{e}"
    );
}

// Replicas starting together on a new database: one migrates, the others
// wait for it (advisory lock) and find the schema current.
#[test]
fn replicas_opening_a_new_database_together_migrate_it_once() {
    let Some(b) = postgres("pg_concurrent_migrate") else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = b.url.clone();
            std::thread::spawn(move || PostgresStore::open_with(&url, 1).map(|_| ()))
        })
        .collect();
    for o in opens {
        o.join().unwrap().unwrap();
    }
    let s = PostgresStore::open_with(&b.url, 1).unwrap();
    let v: i32 = s
        .conn()
        .unwrap()
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(v as usize, schema::MIGRATIONS.len());
}

#[test]
fn a_bad_url_or_unreachable_server_fails_at_open_naming_it() {
    let e = PostgresStore::open("postgres://app:pw@127.0.0.1:1/x")
        .err()
        .expect("nothing listens on port 1")
        .to_string();
    assert!(e.contains("postgres://app:***@127.0.0.1:1/x"), "{e}");
    assert!(!e.contains(":pw@"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
}
