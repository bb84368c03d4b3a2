//! Which real services the test suite runs against, shared by unit and end-to-end tests.
//!
//! `TEST_DATABASE_URL` (a PostgreSQL server URL) and `TEST_REDIS_URL` opt the suite into the
//! real services; `.ci/run` sets both for its second pass. `TEST_QDRANT_URL` adds a Qdrant
//! server to the knowledge-store suite. When one is unset, the tests that
//! need it say so on stderr and pass without it (the SQLite run); when it is set, a service
//! that cannot be reached fails the test, never skips it.

/// `TEST_DATABASE_URL`, when the suite should run on PostgreSQL.
pub fn postgres_url() -> Option<String> {
    service_url("TEST_DATABASE_URL")
}

/// `TEST_REDIS_URL`, when the suite should run against Redis.
pub fn redis_url() -> Option<String> {
    service_url("TEST_REDIS_URL")
}

/// `TEST_QDRANT_URL`, a Qdrant server's gRPC address, when the knowledge-store suite should
/// run against a server as well as the embedded store.
pub fn qdrant_url() -> Option<String> {
    service_url("TEST_QDRANT_URL")
}

fn service_url(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|v| !v.is_empty());
    if url.is_none() {
        eprintln!("{var} is unset: this test runs without that service");
    }
    url
}

/// Creates an empty database on the PostgreSQL server `server_url` names and returns its
/// URL, so each test has a database of its own and tests run in parallel. `.ci/run` drops
/// every `sbtest_*` database afterwards.
pub async fn fresh_postgres_database(server_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("sbtest_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(server_url)
        .await
        .expect("TEST_DATABASE_URL is set but PostgreSQL cannot be reached");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}
