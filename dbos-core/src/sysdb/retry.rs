//! Retrying transient connection failures with capped exponential backoff.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Result;

const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, fails with a non-transient error, or `retry_for` has passed
/// since the first failure. Transient errors are logged at `warn` once per attempt.
pub(crate) async fn retry_transient<T, F, Fut>(
    what: &str,
    retry_for: Duration,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut delay = FIRST_DELAY;
    let mut attempt = 1u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && start.elapsed() + delay < retry_for => {
                tracing::warn!(attempt, error = %e, "{what}: transient failure, retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};

    #[tokio::test]
    async fn retries_transient_then_succeeds_and_stops_on_permanent() {
        let mut n = 0;
        let v = retry_transient("t", Duration::from_secs(5), || {
            n += 1;
            let fail = n < 3;
            async move {
                if fail {
                    Err(Error::new(ErrorKind::Connection, "refused"))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        let mut calls = 0;
        let e = retry_transient::<(), _, _>("t", Duration::from_secs(5), || {
            calls += 1;
            async { Err(Error::new(ErrorKind::Database, "syntax")) }
        })
        .await
        .unwrap_err();
        assert_eq!((calls, e.kind()), (1, ErrorKind::Database));
    }
}
