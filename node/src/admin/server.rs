//! Serves the admin API: authenticates each connection, then answers
//! requests one at a time through an [`AdminHandler`].

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    time::timeout,
};

use super::{
    frame::{read_frame, read_frame_within, write_frame, FrameError, MAX_HELLO_FRAME},
    protocol::{Hello, Request, Response},
};

/// How long a client has to present its token.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Answers admin requests; implemented by the daemon.
pub trait AdminHandler: Send + Sync + 'static {
    /// Handles one authenticated request.
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>>;
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Accepts connections on `listener` until `stop` turns true.
pub async fn serve<H: AdminHandler>(
    listener: TcpListener,
    token: Arc<Vec<u8>>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (token, handler) = (token.clone(), handler.clone());
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &token, &*handler).await {
                            tracing::debug!(%peer, error = %e, "admin connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}

async fn connection<H: AdminHandler>(
    mut stream: TcpStream,
    token: &[u8],
    handler: &H,
) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let hello: Hello = match timeout(
        HELLO_TIMEOUT,
        read_frame_within(&mut stream, MAX_HELLO_FRAME),
    )
    .await
    {
        Ok(Ok(hello)) => hello,
        Ok(Err(FrameError::Malformed(e))) => {
            let refusal = Response::Error {
                message: format!("malformed hello: {e}"),
            };
            write_frame(&mut stream, &refusal).await?;
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    if !constant_time_eq(hello.token.as_bytes(), token) {
        let refusal = Response::Error {
            message: "authentication failed: wrong admin token".into(),
        };
        write_frame(&mut stream, &refusal).await?;
        return Ok(());
    }
    write_frame(&mut stream, &Response::Written { version: 0 }).await?;
    loop {
        let request: Request = match timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Err(_) => return Ok(()),
            Ok(Err(FrameError::Malformed(e))) => {
                // A bad request gets an answer, and the connection stays usable.
                let msg = Response::Error {
                    message: format!("malformed request: {e}"),
                };
                write_frame(&mut stream, &msg).await?;
                continue;
            }
            Ok(other) => other?,
        };
        let response = handler.handle(request).await;
        write_frame(&mut stream, &response).await?;
    }
}

/// Binds the admin listener (separate so the daemon fails early on a bad address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
