//! Client side of the admin API, used by `lbctl` and by nodes collecting the
//! cluster status from each other.

use std::time::Duration;

use tokio::{net::TcpStream, time::timeout};

use super::{
    frame::{read_frame, write_frame, FrameError},
    protocol::{Hello, Request, Response},
};

/// Errors talking to a node's admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The exchange broke.
    #[error("talking to {0}: {1}")]
    Frame(String, FrameError),
    /// The node refused the token.
    #[error("{0}")]
    Refused(String),
}

/// An authenticated connection to one node.
pub struct AdminClient {
    stream: TcpStream,
    addr: String,
    limit: Duration,
}

impl AdminClient {
    /// Connects to `addr` and authenticates with `token`; every step is
    /// bounded by `limit`.
    pub async fn connect(addr: &str, token: &str, limit: Duration) -> Result<Self, ClientError> {
        let stream = match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Err(_) => return Err(ClientError::Timeout(addr.to_owned(), limit)),
        };
        let _ = stream.set_nodelay(true);
        let mut client = Self {
            stream,
            addr: addr.to_owned(),
            limit,
        };
        let hello = Hello {
            token: token.to_owned(),
        };
        match client.exchange(&hello).await? {
            Response::Error { message } => Err(ClientError::Refused(message)),
            _ => Ok(client),
        }
    }

    /// Sends one request and returns the answer.
    pub async fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.exchange(request).await
    }

    async fn exchange<T: serde::Serialize>(
        &mut self,
        message: &T,
    ) -> Result<Response, ClientError> {
        let addr = self.addr.clone();
        let fut = async {
            write_frame(&mut self.stream, message).await?;
            read_frame::<_, Response>(&mut self.stream).await
        };
        match timeout(self.limit, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(ClientError::Frame(addr, e)),
            Err(_) => Err(ClientError::Timeout(addr, self.limit)),
        }
    }
}
