//! One way to reach Redis for everything that shares state between nodes (rate limits,
//! events, stream tickets): a reconnecting connection with short timeouts, so a sick Redis
//! fails a request quickly instead of hanging it, and a node whose `REDIS_URL` is wrong
//! stops at start-up within seconds.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

/// Longest wait for Redis to connect or answer one command.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The client for `url` and a reconnecting connection through it.
pub async fn connect(
    url: &SecretString,
) -> Result<(redis::Client, ConnectionManager), redis::RedisError> {
    let client = redis::Client::open(url.expose_secret())?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT);
    let conn = tokio::time::timeout(
        2 * REDIS_TIMEOUT,
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    Ok((client, conn))
}
