//! An authenticated message channel between two cluster members over TCP.
//!
//! Peers prove knowledge of the shared cluster secret with a three-message
//! handshake (HMAC-SHA256 over both sides' fresh nonces and node ids), then
//! every frame carries an HMAC tag under a per-connection session key that
//! also covers the direction and a sequence number. A process without the
//! secret cannot complete the handshake, so it can neither vote, append nor
//! read; a recorded frame cannot be replayed, reordered or reflected.
//! Messages are authenticated, not encrypted: the table is not confidential,
//! only its integrity matters.
//!
//! Frame body after the handshake: `bincode(message) || tag[32]`.
//!
//! `handshake` sets a channel up, `secret` holds the HMAC primitives; this
//! module is the channel itself (sequenced, tagged frames).

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::encoding::{decode, encode, EncodingError};
use crate::raft_types::NodeId;
use crate::transport::wire::frame::{read_frame, write_frame, FrameError};

mod handshake;
mod secret;

pub use handshake::announced_node_id;
pub use secret::ClusterSecret;
use secret::{mac_with, verify_with};

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Smallest accepted cluster secret.
pub const MIN_SECRET_LEN: usize = 16;
/// Handshake magic: "ELBR" (EdgeLB Raft).
pub const MAGIC: [u8; 4] = *b"ELBR";
/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;
/// Direction bytes covered by every frame tag (no reflection).
const DIR_CLIENT_TO_SERVER: u8 = 0;
const DIR_SERVER_TO_CLIENT: u8 = 1;

/// Why a channel could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Could not connect to the peer.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Framing failed (socket error, oversized or empty frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message did not decode.
    #[error("malformed message: {0}")]
    Malformed(#[from] EncodingError),
    /// The peer does not speak this protocol.
    #[error("bad handshake: {0}")]
    BadHandshake(&'static str),
    /// The peer does not know the cluster secret (or a frame was altered).
    #[error("authentication failed: {0}")]
    AuthFailed(&'static str),
    /// The secret is too short to be used.
    #[error("cluster secret of {0} bytes is shorter than {MIN_SECRET_LEN}")]
    WeakSecret(usize),
    /// The operation did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl ChannelError {
    /// Whether the peer broke the protocol (garbage, oversized or empty
    /// frames, a wrong handshake or tag, an undecodable message), as opposed
    /// to the connection merely failing, closing or timing out. The server
    /// counts the connections it drops for this.
    pub fn is_protocol_violation(&self) -> bool {
        match self {
            ChannelError::Frame(FrameError::TooLarge { .. } | FrameError::Empty)
            | ChannelError::Malformed(_)
            | ChannelError::BadHandshake(_)
            | ChannelError::AuthFailed(_) => true,
            ChannelError::Connect(_)
            | ChannelError::Frame(FrameError::Io(_))
            | ChannelError::WeakSecret(_)
            | ChannelError::Timeout(_) => false,
        }
    }
}

/// An authenticated, sequenced message channel over one TCP connection.
pub struct SecureChannel {
    stream: TcpStream,
    key: [u8; TAG_LEN],
    send_dir: u8,
    send_seq: u64,
    recv_seq: u64,
    max_frame: usize,
    peer_id: NodeId,
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("peer_id", &self.peer_id)
            .field("send_seq", &self.send_seq)
            .field("recv_seq", &self.recv_seq)
            .finish_non_exhaustive()
    }
}

async fn within<T, E: From<ChannelError>>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(ChannelError::Timeout(limit).into()))
}

impl SecureChannel {
    /// Whether the connection still looks usable: the peer has not closed it
    /// and sent nothing unsolicited. Checked before reusing an idle channel,
    /// so a request is not written into a connection already known dead
    /// (where its fate would be unknowable).
    pub fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// The node id the peer announced (authenticated by the handshake).
    pub fn peer_id(&self) -> NodeId {
        self.peer_id
    }

    /// Sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), ChannelError> {
        let payload = encode(msg)?;
        let tag = mac_with(
            &self.key,
            &[&[self.send_dir], &self.send_seq.to_be_bytes(), &payload],
        );
        write_frame(&mut self.stream, &[&payload, &tag], self.max_frame).await?;
        self.send_seq += 1;
        Ok(())
    }

    /// Receives one message; any tampering, replay or reordering is an error.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ChannelError> {
        let body = read_frame(&mut self.stream, self.max_frame).await?;
        if body.len() <= TAG_LEN {
            return Err(ChannelError::AuthFailed("frame shorter than its tag"));
        }
        let (payload, tag) = body.split_at(body.len() - TAG_LEN);
        let dir = self.send_dir ^ 1;
        if !verify_with(
            &self.key,
            &[&[dir], &self.recv_seq.to_be_bytes(), payload],
            tag,
        ) {
            return Err(ChannelError::AuthFailed("bad frame tag"));
        }
        self.recv_seq += 1;
        Ok(decode(payload)?)
    }

    /// Sends a request and waits for its reply, all within `limit`.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        request: &Q,
        limit: Duration,
    ) -> Result<A, ChannelError> {
        within(limit, async {
            self.send(request).await?;
            self.recv().await
        })
        .await
    }
}

#[cfg(test)]
mod tests;
