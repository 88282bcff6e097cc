//! The one place that bounds calls to the outside — session, remember and throttle stores,
//! the user loader — so that a hung database answers 503 instead of hanging the request.

use std::{future::Future, pin::pin, task::Poll};

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
    let mut fut = pin!(fut);
    // Most calls answer on their first poll (in-memory stores, a session already loaded): the
    // timer, which reads the clock and registers with the driver, is armed only for a call
    // that has to wait.
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => match tokio::time::timeout(limit, fut).await {
            Ok(result) => result,
            Err(_) => return Err(Error::Timeout(what)),
        },
    };
    result.map_err(Error::from)
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
