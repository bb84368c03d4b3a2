//! The store: every row switchboard keeps, behind one repository API that behaves the same on
//! SQLite (the embedded default) and PostgreSQL (production).
//!
//! Both backends are reached through sqlx's `Any` driver, so each query is written once. That
//! limits columns to text, integers and reals: ids are UUID text, times are Unix milliseconds,
//! flags are 0/1 integers (the `Any` driver cannot decode SQLite booleans) and JSON is text. The schema lives in `migrations/{sqlite,postgres}`.
//!
//! Tenancy has two walls. Every tenant-scoped method takes a [`TenantId`] and filters on it.
//! On PostgreSQL, each transaction also sets `app.tenant_id`, and row-level security policies
//! hide every other tenant's rows from the application role even if a query forgets its
//! filter. The few lookups that must cross tenants (login by email, refresh tokens, routing
//! by dialled number) say so by opening a [`Scope::Platform`] transaction.

mod agents;
mod analytics;
mod audit;
mod call_history;
mod callbacks;
mod calls;
mod conversations;
mod documents;
mod leads;
mod messages;
mod phone_numbers;
mod tenants;
mod thread;
mod tokens;
mod usage;
mod users;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actors::domain::TenantId;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Transaction};

pub use agents::{Agent, AgentDraft};
pub use analytics::{AnalyticsSummary, Bucket, CallFigures, Percentiles};
pub use audit::{Actor, AuditEntry};
pub use call_history::{CallDetail, CallFilter, CallPage, CallSummary, CallTurn};
pub use callbacks::{
    resolve_callback_time, Callback, CallbackPage, CallbackRequester, CallbackStatus, NewCallback,
    CALLBACK_LEASE_MS, MAX_CALLBACK_ATTEMPTS,
};
pub use calls::{CallRecord, Direction, NewCall, TwilioCallStatus};
pub use documents::{Document, DocumentStatus, NewDocument, INGESTION_STALL_MS};
pub use leads::{
    lead_variables, Lead, LeadChange, LeadDraft, LeadPage, LeadQuery, LeadSort, LeadStats,
    LeadStatus, ListError, LEAD_VARIABLES,
};
pub use messages::{Conversation, ConversationDetail, ConversationPage, Message, NewMessage};
pub use phone_numbers::{NumberRoute, PhoneNumber, PhoneNumberDraft};
pub use tenants::{BusinessHours, SmsReplyMode, Tenant, TenantPatch};
pub use thread::{StoreThread, ThreadStopped};
pub use tokens::{PasswordTokenPurpose, RefreshOutcome};
pub use usage::UsageTotals;
pub use users::{Credentials, NewUser, User};
pub use webhooks::{
    wants, DeliveryPage, DueDelivery, EndpointDraft, WebhookDelivery, WebhookEndpoint,
};

use crate::settings::DatabaseKind;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL role the application runs as, so row-level security applies to it even
/// when `DATABASE_URL` names a superuser or the tables' owner.
pub const POSTGRES_APP_ROLE: &str = "switchboard_app";

/// Read connections beside SQLite's one writer: enough for a burst of calls starting at once.
const SQLITE_READERS: u32 = 4;

/// What can go wrong in the store, in terms the HTTP layer maps to status codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row for this tenant (or at all).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write; the text says which, in user terms.
    #[error("{0}")]
    Conflict(&'static str),
    /// The write names a related row (an agent, a user) that this tenant does not have.
    #[error("{0}")]
    BadReference(&'static str),
    /// A stored value could not be read back into its type: a bug or a hand-edited row.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed or the database holds migrations this build does not know.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Turns a constraint violation into the error the caller names for it: `unique` for a
    /// uniqueness rule, `foreign_key` for a reference. Other errors pass through.
    pub(crate) fn refused_as(
        unique: Option<StoreError>,
        foreign_key: Option<StoreError>,
    ) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |e| {
            let kind = match &e {
                sqlx::Error::Database(db) => Some(db.kind()),
                _ => None,
            };
            match (kind, unique, foreign_key) {
                (Some(sqlx::error::ErrorKind::UniqueViolation), Some(mapped), _) => mapped,
                (Some(sqlx::error::ErrorKind::ForeignKeyViolation), _, Some(mapped)) => mapped,
                _ => StoreError::Database(e),
            }
        }
    }
}

impl StoreError {
    /// The error as the runtime's ports report it: a database that cannot be reached is
    /// worth retrying, anything else is not.
    pub(crate) fn into_port(self, what: &str) -> actors::ports::PortError {
        match self {
            StoreError::Database(_) => {
                actors::ports::PortError::Unavailable(format!("{what}: {self}"))
            }
            other => actors::ports::PortError::Refused(format!("{what}: {other}")),
        }
    }
}

/// Which rows a transaction may see on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Only this tenant's rows.
    Tenant(TenantId),
    /// Every tenant's rows: only for lookups whose key is not yet tied to a tenant.
    Platform,
}

/// The repository: a connection pool plus which backend it talks to.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where read-only transactions go: on SQLite a pool of its own, so reads run beside the
    /// one writer (WAL lets them) instead of queueing behind it; on PostgreSQL `pool` itself.
    readers: AnyPool,
    /// Where connection-holding work runs (see [`Store::on_own_thread`]).
    thread: Arc<thread::OwnThread>,
    kind: DatabaseKind,
    migrator: &'static Migrator,
}

impl Store {
    /// Connects, runs pending migrations, and opens the application's pool. On PostgreSQL the
    /// migrations run as the connecting user and the pool then switches to
    /// [`POSTGRES_APP_ROLE`], which row-level security applies to.
    pub async fn open(url: &SecretString, kind: DatabaseKind) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url.expose_secret())?.disable_statement_logging();
        let migrator = match kind {
            DatabaseKind::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        // PostgreSQL serializes concurrent migrators with an advisory lock; SQLite has none, so
        // nodes sharing one file take turns through a lock file beside it.
        let _turn = match kind {
            DatabaseKind::Sqlite => sqlite_migration_lock(url.expose_secret()).await?,
            DatabaseKind::Postgres => None,
        };
        let mut conn = options.connect().await?;
        migrator.run(&mut conn).await?;
        conn.close().await?;

        let pool = match kind {
            // SQLite allows one writer at a time; a single connection turns "database is
            // locked" races into an orderly queue. In WAL mode, `synchronous = NORMAL` syncs
            // at checkpoints instead of at every commit: the file never corrupts, a crashed
            // process loses nothing, and only a power cut can undo the last moments' commits.
            // Syncing every commit capped a node at a few hundred live calls (the load test
            // saw 2-second queues and 5-second pool timeouts at 1,000). A connection to a local
            // file cannot drop the way a network one can, so it is not pinged before each
            // transaction: the ping was a round trip to SQLite's worker thread, one in four of
            // a call turn's.
            DatabaseKind::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                            .await
                            .map(|_| ())
                    })
                }),
            DatabaseKind::Postgres => AnyPoolOptions::new().max_connections(20).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(format!("SET ROLE {POSTGRES_APP_ROLE}").as_str())
                        .await
                        .map(|_| ())
                })
            }),
        };
        let pool = pool
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let in_memory = sqlite_file(url.expose_secret()).is_none();
        let readers = match kind {
            // An in-memory database exists only on its own connection: nothing to share.
            DatabaseKind::Sqlite if !in_memory => AnyPoolOptions::new()
                .max_connections(SQLITE_READERS)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                            .await
                            .map(|_| ())
                    })
                })
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?,
            DatabaseKind::Sqlite | DatabaseKind::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            readers,
            thread: Arc::new(thread::OwnThread::start().map_err(sqlx::Error::Io)?),
            kind,
            migrator,
        })
    }

    /// Connections the pool holds, and how many of them are idle.
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Readiness: the database answers and every migration this build knows is applied.
    pub async fn check_ready(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?;
        match self.migrator.iter().find(|m| !applied.contains(&m.version)) {
            Some(missing) => Err(StoreError::Corrupt(format!(
                "migration {} ({}) is not applied",
                missing.version, missing.description
            ))),
            None => Ok(()),
        }
    }

    /// Opens a transaction that sees what `scope` allows. Every repository method goes
    /// through here, so the PostgreSQL setting can never be forgotten.
    pub(crate) async fn begin(
        &self,
        scope: Scope,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        self.begin_on(&self.pool, scope).await
    }

    /// Runs one statement that writes the tenant's rows and returns how many rows it touched.
    /// On SQLite a lone statement commits by itself, so it skips `BEGIN` and `COMMIT` (two
    /// round trips to SQLite's worker thread; a call writes this way about ten times); on
    /// PostgreSQL it runs in a transaction scoped to the tenant like any other.
    pub(crate) async fn write_one<'q>(
        &self,
        tenant: TenantId,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<u64, StoreError> {
        if self.kind == DatabaseKind::Sqlite {
            return Ok(query.execute(&self.pool).await?.rows_affected());
        }
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(rows)
    }

    /// Like [`Store::begin`] for a transaction that only reads. The hot reads of a call's
    /// start (number routing, the customer's conversation) go here, so on SQLite they do not
    /// wait behind the call records being written; a write here fails (`query_only`).
    pub(crate) async fn begin_read(
        &self,
        scope: Scope,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        self.begin_on(&self.readers, scope).await
    }

    async fn begin_on(
        &self,
        pool: &AnyPool,
        scope: Scope,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let mut tx = pool.begin().await?;
        if self.kind == DatabaseKind::Postgres {
            let (tenant, scope) = match scope {
                Scope::Tenant(id) => (id.to_string(), "tenant"),
                Scope::Platform => (String::new(), "platform"),
            };
            sqlx::query(
                "SELECT set_config('app.tenant_id', $1, true), set_config('app.scope', $2, true)",
            )
            .bind(tenant)
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx)
    }

    /// Closes every connection; used at shutdown and by tests that drop their database.
    pub async fn close(&self) {
        self.readers.close().await;
        self.pool.close().await;
    }
}

impl Store {
    /// One of the tenant's rows of `table` by id, read as `columns` into `R` and converted;
    /// `NotFound` when the tenant has no such row.
    pub(crate) async fn owned_row<R, T>(
        &self,
        tenant: TenantId,
        (table, columns): (&str, &str),
        id: &str,
    ) -> Result<T, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<R> = sqlx::query_as(&format!(
            "SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Deletes one of the tenant's rows in a transaction of its own (see [`delete_owned`]).
    pub(crate) async fn delete_one(
        &self,
        tenant: TenantId,
        actor: Actor,
        table_and_kind: (&'static str, &'static str),
        id: &str,
        on_foreign_key: Option<StoreError>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        delete_owned(&mut tx, tenant, actor, table_and_kind, id, on_foreign_key).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Deletes one of the tenant's rows by id and records the deletion in the audit log, inside
/// the caller's transaction. `NotFound` when the tenant has no such row; a reference that
/// still points at the row becomes `on_foreign_key` when given.
pub(crate) async fn delete_owned(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    actor: Actor,
    (table, kind): (&'static str, &'static str),
    id: &str,
    on_foreign_key: Option<StoreError>,
) -> Result<(), StoreError> {
    let deleted = sqlx::query(&format!(
        "DELETE FROM {table} WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.to_string())
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::refused_as(None, on_foreign_key))?
    .rows_affected();
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    let action = format!("{kind}.deleted");
    audit::record(
        tx,
        tenant,
        actor,
        &action,
        kind,
        Some(id),
        &serde_json::json!({}),
    )
    .await
}

/// The opaque cursor of a list ordered by a time, then an id: the position after the row
/// with `at_ms` and `id`.
pub(crate) fn time_id_cursor(at_ms: i64, id: impl std::fmt::Display) -> String {
    format!("{at_ms}_{id}")
}

/// Reads a [`time_id_cursor`] back; `None` when it is not one this server gave out.
pub fn parse_time_id_cursor<T: FromStr>(raw: &str) -> Option<(i64, T)> {
    let (at, id) = raw.split_once('_')?;
    Some((at.parse().ok()?, id.parse().ok()?))
}

/// A list's `cursor` parameter read back, or a 422-worthy error when this server did not
/// give it out.
pub(crate) fn page_cursor(cursor: Option<&str>) -> Result<Option<(i64, uuid::Uuid)>, StoreError> {
    cursor
        .map(|raw| {
            parse_time_id_cursor(raw).ok_or(StoreError::BadReference(
                "cursor is not one this API gave out",
            ))
        })
        .transpose()
}

/// Rows fetched with `limit + 1`, read into items and cut down to one page with the cursor
/// of its last item when more follow.
pub(crate) fn page_from_rows<R, T>(
    rows: Vec<R>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    let items = rows
        .into_iter()
        .map(T::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page_of(items, limit as usize, cursor_of))
}

/// Cuts rows fetched with `limit + 1` down to one page: the page, and the cursor of its last
/// row when more rows follow.
pub(crate) fn page_of<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(cursor_of);
    (rows, next)
}

/// The current time as stored: Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Reads a stored id back into its type.
pub(crate) fn parse_id<T: FromStr>(raw: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("`{raw}` is not an id")))
}

/// Reads a stored JSON column back into its type.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

/// Writes a value for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes to JSON")
}

/// The file of a SQLite URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<&str> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then_some(path)
}

/// An exclusive lock on `<database file>.migrate-lock`, held while the returned file lives;
/// `None` for an in-memory database. Waits for another process that holds it.
async fn sqlite_migration_lock(url: &str) -> Result<Option<std::fs::File>, StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.migrate-lock");
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|locked| locked)
    .map_err(sqlx::Error::Io)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AgentDraft, NewUser, Tenant};
    use actors::domain::Role;

    fn owner(email: &str) -> NewUser {
        NewUser {
            email: email.to_owned(),
            name: "Owner".to_owned(),
            role: Role::Owner,
            password_hash: None,
        }
    }

    fn agent(name: &str) -> AgentDraft {
        AgentDraft::named(name.to_owned())
    }

    /// Two tenants, A and B, registered in `store`.
    async fn two_tenants(store: &Store) -> (Tenant, Tenant) {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (a, _) = store
            .register("A", owner(&format!("a-{unique}@a.example")))
            .await
            .unwrap();
        let (b, _) = store
            .register("B", owner(&format!("b-{unique}@b.example")))
            .await
            .unwrap();
        (a, b)
    }

    /// Nodes started together on one new SQLite file migrate it in turn, not both at once
    /// (which failed with "duplicate column name").
    #[tokio::test]
    async fn nodes_opening_one_new_sqlite_file_together_both_start() {
        let dir = std::env::temp_dir().join(format!("sbmigrate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = SecretString::from(format!(
            "sqlite://{}?mode=rwc",
            dir.join("shared.db").display()
        ));
        let opens = (0..4).map(|_| Store::open(&url, DatabaseKind::Sqlite));
        for opened in futures::future::join_all(opens).await {
            opened.expect("every node starts");
        }
    }

    /// The second wall: on PostgreSQL a query that forgets `WHERE tenant_id = …` still sees
    /// only the rows of the tenant its transaction is scoped to, on the application's own
    /// pool and role.
    #[tokio::test]
    async fn postgres_row_level_security_hides_other_tenants_from_unfiltered_queries() {
        let Some(server) = crate::testing::postgres_url() else {
            return;
        };
        let url = crate::testing::fresh_postgres_database(&server).await;
        let store = Store::open(&SecretString::from(url), DatabaseKind::Postgres)
            .await
            .unwrap();
        let (a, b) = two_tenants(&store).await;
        for (tenant, name) in [(a.id, "A1"), (a.id, "A2"), (b.id, "B1")] {
            store
                .save_agent(tenant, Actor::System, None, &agent(name))
                .await
                .unwrap();
        }

        let mut tx = store.begin(Scope::Tenant(a.id)).await.unwrap();
        let role: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(role, POSTGRES_APP_ROLE);
        let mut names: Vec<String> = sqlx::query_scalar("SELECT name FROM agents")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        names.sort();
        assert_eq!(names, ["A1", "A2"]);
        let tenants: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(tenants, 1);
        let renamed = sqlx::query("UPDATE agents SET name = 'renamed'")
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            renamed.rows_affected(),
            2,
            "an unfiltered update touches only A's rows"
        );
        let smuggled = sqlx::query("INSERT INTO agents (id, tenant_id, name, created_at, updated_at) VALUES ($1, $2, 'x', 0, 0)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(b.id.to_string())
            .execute(&mut *tx)
            .await;
        assert!(
            smuggled.is_err(),
            "a row for another tenant cannot be written"
        );
        drop(tx);

        let b_agents = store.agents(b.id).await.unwrap();
        assert_eq!(b_agents.len(), 1);
        assert_eq!(b_agents[0].draft.name, "B1", "B's agent was not renamed");

        let mut unscoped = store.pool.begin().await.unwrap();
        let visible: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents")
            .fetch_one(&mut *unscoped)
            .await
            .unwrap();
        assert_eq!(visible, 0, "a transaction with no tenant sees nothing");
        // A checked-out connection would keep `close` waiting for ever.
        drop(unscoped);
        store.close().await;
    }

    #[tokio::test]
    async fn the_schema_refuses_a_number_pointing_at_another_tenants_agent() {
        let dir = std::env::temp_dir().join(format!("sbstore-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (url, kind) = match crate::testing::postgres_url() {
            Some(server) => (
                crate::testing::fresh_postgres_database(&server).await,
                DatabaseKind::Postgres,
            ),
            None => (
                format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
                DatabaseKind::Sqlite,
            ),
        };
        let store = Store::open(&SecretString::from(url), kind).await.unwrap();
        let (a, b) = two_tenants(&store).await;
        let b_agent = store
            .save_agent(b.id, Actor::System, None, &agent("B1"))
            .await
            .unwrap();
        let draft = crate::store::PhoneNumberDraft {
            number: actors::domain::E164::parse("+14155550123").unwrap(),
            agent_id: b_agent.id,
            label: String::new(),
        };
        let refused = store
            .save_phone_number(a.id, Actor::System, None, &draft)
            .await;
        assert!(
            matches!(refused, Err(StoreError::BadReference(_))),
            "{refused:?}"
        );
        store.close().await;
    }
}
