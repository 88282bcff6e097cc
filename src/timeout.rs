//! The one place that bounds calls to the outside — session, remember and throttle stores,
//! the user loader — so that a hung database answers 503 instead of hanging the request.

use std::future::Future;

use crate::{Error, Result};

/// Runs `fut` under the manager's timeout, naming `what` in the error.
pub(crate) async fn timed<T, E>(
    limit: std::time::Duration,
    what: &'static str,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    Error: From<E>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Timeout(what)),
    }
}

/// Runs a loader call under the manager's timeout.
pub(crate) async fn loader_call<T, E>(
    limit: std::time::Duration,
    fut: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    timed(limit, "user loader", async {
        fut.await.map_err(|e| Error::Loader(Box::new(e)))
    })
    .await
}
