//! Work an actor runs beside its mailbox (a model stream, a synthesis, a session reader),
//! tied to the actor's life: dropping the handle aborts the task, so a stopped or killed
//! actor leaves nothing running (ractor kills children without running their `post_stop`),
//! and a panic inside the task is handed back to the actor, which fails with it so its
//! supervisor's restart policy applies as for a panic in `handle`.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::task::JoinHandle;

/// A task owned by an actor's state; aborted when dropped.
#[derive(Debug)]
pub struct ActorTask(JoinHandle<()>);

impl ActorTask {
    /// Runs `work`; if it panics, `on_panic` gets the panic's message.
    pub fn spawn(
        work: impl Future<Output = ()> + Send + 'static,
        on_panic: impl FnOnce(String) + Send + 'static,
    ) -> Self {
        Self(tokio::spawn(async move {
            if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
                on_panic(panic_message(panic.as_ref()));
            }
        }))
    }
}

/// What a caught panic said (its `&str` or `String` payload), for the failure it becomes.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a task panicked".to_owned())
}

impl Drop for ActorTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_dropped_task_stops_and_a_panicking_one_reports() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let task = ActorTask::spawn(
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
            },
            |_| {},
        );
        drop(task);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !finished.load(Ordering::SeqCst),
            "aborted before it finished"
        );

        let (tx, rx) = tokio::sync::oneshot::channel();
        let _task = ActorTask::spawn(async { panic!("boom") }, move |message| {
            let _ = tx.send(message);
        });
        assert_eq!(rx.await.unwrap(), "boom");
    }
}
