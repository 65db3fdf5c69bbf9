//! A case run whose code panics becomes a reported error, not a lost case.
//!
//! Each case run is its own tokio task; a panic in it ends that task only, and its
//! [`tokio::task::JoinError::is_panic`] says so. The panic's message and location are taken by a
//! panic hook while the task runs (a panic payload carries no location), and the default hook's
//! `thread '...' panicked at` line is not printed for it: the runner reports the panic as the
//! case's ERROR instead. Panics outside case runs still reach the previous hook.

use std::future::Future;
use std::sync::{Arc, Mutex, Once};

tokio::task_local! {
    /// Where the hook puts the panic of the case run being polled on this thread.
    static PANIC_SITE: Arc<Mutex<Option<TaskPanic>>>;
}

/// A case run's task panicked (or was cancelled by the runtime).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error: {message}{}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
pub struct TaskPanic {
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: Option<String>,
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let taken = PANIC_SITE.try_with(|site| {
                let panic = TaskPanic {
                    message: payload_text(info.payload()),
                    location: info
                        .location()
                        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                };
                *site.lock().unwrap_or_else(|e| e.into_inner()) = Some(panic);
            });
            if taken.is_err() {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Aborts the task when the waiting side goes away (the runner aborts a case on Ctrl-C).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `work` as its own task; its panic comes back as [`TaskPanic`].
pub async fn contain<F>(work: F) -> Result<F::Output, TaskPanic>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    install_hook();
    let site = Arc::new(Mutex::new(None));
    let mut task = AbortOnDrop(tokio::spawn(PANIC_SITE.scope(site.clone(), work)));
    match (&mut task.0).await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => {
            let recorded = site.lock().unwrap_or_else(|e| e.into_inner()).take();
            Err(recorded.unwrap_or_else(|| TaskPanic {
                message: payload_text(e.into_panic().as_ref()),
                location: None,
            }))
        }
        Err(e) => Err(TaskPanic {
            message: format!("the case's task was cancelled: {e}"),
            location: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_task_is_reported_with_its_location_and_others_run_on() {
        let line = line!() + 4;
        let panicking = contain(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            v[usize::from(v.is_empty())]
        });
        let fine = contain(async { 7 });
        let (panicked, fine) = tokio::join!(panicking, fine);
        let panic = panicked.expect_err("the task panicked");
        assert!(panic.message.contains("index out of bounds"), "{panic:?}");
        let location = panic.location.clone().unwrap_or_default();
        assert!(
            location.starts_with(&format!("{}:{line}:", file!())),
            "{location}"
        );
        assert!(
            panic
                .to_string()
                .starts_with("internal error: index out of bounds")
        );
        assert_eq!(fine, Ok(7));
    }

    #[tokio::test]
    async fn dropping_the_wait_aborts_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = contain(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        // Poll once so the task is spawned, then drop the wait.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), waiting).await;
        // The task's sender is dropped with the aborted task.
        assert!(rx.await.is_err());
    }
}
