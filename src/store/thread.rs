//! A thread of the store's own, for the work that holds a database connection.
//!
//! SQLite has one writer connection, and a transaction holds it from `BEGIN` to `COMMIT`
//! across several round trips to its worker thread. When the task that holds it runs on the
//! server's busy runtime, every round trip also waits for that task's turn among thousands
//! of audio tasks: at 2,000 calls the connection was held for tens of milliseconds per
//! transaction and call starts waited past the pool's 5 s limit. So the Twilio webhooks and
//! the writes of calls and conversations (all but a few of a call's transactions) run as
//! tasks on this thread's runtime, which does nothing else and answers each round trip at
//! once; their callers await the result as before.

use std::collections::BTreeMap;
use std::future::Future;

use actors::domain::TenantId;
use actors::ports::{
    CallAnalysis, CallInfo, CallLog, CallOutcome, CallUsage, ConversationSnapshot,
    ConversationStore, HistoryEntry, PortError, PortResult, TurnRecord,
};
use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::Store;

/// The runtime of the store's thread, stopped when the last [`Store`] clone is dropped.
pub(crate) struct OwnThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl OwnThread {
    /// Starts the thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

/// The store's thread has stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the store's thread has stopped")]
pub struct ThreadStopped;

impl Store {
    /// Runs `work` on the store's thread and waits for its result (a panic in it resumes
    /// here). For work that holds a database connection across awaits.
    pub async fn on_own_thread<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ThreadStopped> {
        match self.thread.handle.spawn(work).await {
            Ok(result) => Ok(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(ThreadStopped),
        }
    }
}

/// The store as the calls' [`CallLog`] and [`ConversationStore`], each write on the store's
/// thread.
#[derive(Clone)]
pub struct StoreThread(pub Store);

impl StoreThread {
    async fn run<T, F>(&self, work: impl FnOnce(Store) -> F) -> PortResult<T>
    where
        F: Future<Output = PortResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.0
            .on_own_thread(work(self.0.clone()))
            .await
            .unwrap_or_else(|stopped| Err(PortError::Unavailable(stopped.to_string())))
    }
}

#[async_trait]
impl CallLog for StoreThread {
    async fn call_started(&self, call: &CallInfo) -> PortResult<()> {
        let call = call.clone();
        self.run(|store| async move { store.call_started(&call).await })
            .await
    }

    async fn turn(&self, call: &CallInfo, turn: &TurnRecord) -> PortResult<()> {
        let (call, turn) = (call.clone(), turn.clone());
        self.run(|store| async move { store.turn(&call, &turn).await })
            .await
    }

    async fn tool_called(&self, call: &CallInfo, tool: &str) -> PortResult<()> {
        let (call, tool) = (call.clone(), tool.to_owned());
        self.run(|store| async move { store.tool_called(&call, &tool).await })
            .await
    }

    async fn call_ended(&self, call: &CallInfo, outcome: &CallOutcome) -> PortResult<()> {
        let (call, outcome) = (call.clone(), outcome.clone());
        self.run(|store| async move { store.call_ended(&call, &outcome).await })
            .await
    }

    async fn usage(&self, call: &CallInfo, usage: &CallUsage) -> PortResult<()> {
        let (call, usage) = (call.clone(), *usage);
        self.run(|store| async move { store.usage(&call, &usage).await })
            .await
    }

    async fn analysis(
        &self,
        call: &CallInfo,
        analysis: &CallAnalysis,
    ) -> PortResult<BTreeMap<String, String>> {
        let (call, analysis) = (call.clone(), analysis.clone());
        self.run(|store| async move { store.analysis(&call, &analysis).await })
            .await
    }
}

#[async_trait]
impl ConversationStore for StoreThread {
    async fn load(&self, tenant: TenantId, customer: &str) -> PortResult<ConversationSnapshot> {
        let customer = customer.to_owned();
        self.run(|store| async move { store.load(tenant, &customer).await })
            .await
    }

    async fn append(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> PortResult<()> {
        let (customer, entry) = (customer.to_owned(), entry.clone());
        self.run(|store| async move { store.append(tenant, &customer, &entry).await })
            .await
    }

    async fn save_summary(
        &self,
        tenant: TenantId,
        customer: &str,
        summary: &str,
    ) -> PortResult<()> {
        let (customer, summary) = (customer.to_owned(), summary.to_owned());
        self.run(|store| async move { store.save_summary(tenant, &customer, &summary).await })
            .await
    }

    async fn update_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: BTreeMap<String, String>,
    ) -> PortResult<()> {
        let customer = customer.to_owned();
        self.run(|store| async move { store.update_lead(tenant, &customer, fields).await })
            .await
    }

    async fn schedule_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> PortResult<String> {
        let (customer, when, note) = (customer.to_owned(), when.to_owned(), note.to_owned());
        self.run(|store| async move {
            store
                .schedule_callback(tenant, &customer, &when, &note)
                .await
        })
        .await
    }
}
