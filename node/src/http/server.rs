//! Accepts the API's connections and keeps each bounded: headers within
//! [`HEADER_TIMEOUT`], a body within the routes' body timeout, at most
//! [`MAX_CONNECTIONS`] at once, none older than [`CONNECTION_LIFETIME`].
//! A stop closes every connection, so nothing outlives the task.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

use super::Api;

/// How long a client has to send a request's headers (from the connection
/// or the previous answer): a slow or partial request is dropped then.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; one more is closed as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection is closed after this long whatever it does (a keep-alive
/// client reconnects).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Binds the API's listener (separate so the daemon fails early on a bad
/// or busy address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `api` on `listener` until `stop` turns true, then closes every
/// connection and returns.
pub async fn serve(listener: TcpListener, api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap the finished connections, so the set holds the open ones.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(%peer, limit = MAX_CONNECTIONS, "HTTP API: too many connections, closing one");
                    drop(stream);
                }
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, api.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    connections.shutdown().await;
                    return;
                }
            }
        }
    }
}

async fn connection(stream: TcpStream, api: Arc<Api>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let service = service_fn(move |request| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.answer(request).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "HTTP API connection ended"),
        Err(_) => tracing::debug!(?peer, "HTTP API connection closed at its lifetime"),
    }
}
