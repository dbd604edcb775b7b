//! The three-message handshake that authenticates both ends of a new
//! connection (hello, challenge with the server's proof, client proof) and
//! derives the per-connection session key.

use std::time::Duration;

use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpStream, ToSocketAddrs};

use super::{
    within, ChannelError, ClusterSecret, SecureChannel, DIR_CLIENT_TO_SERVER, DIR_SERVER_TO_CLIENT,
    MAGIC, PROTOCOL_VERSION, TAG_LEN,
};
use crate::encoding::{decode, encode};
use crate::raft_types::NodeId;
use crate::transport::wire::frame::{read_frame, write_frame};

/// Largest handshake frame (they are tiny; anything bigger is garbage).
const MAX_HANDSHAKE_FRAME: usize = 256;
/// Domain-separation labels: each MAC of the handshake has its own.
const LABEL_SERVER: &[u8] = b"edgelb-raft server proof";
const LABEL_CLIENT: &[u8] = b"edgelb-raft client proof";
pub(super) const LABEL_SESSION: &[u8] = b"edgelb-raft session key";

#[derive(Serialize, Deserialize)]
struct Hello {
    magic: [u8; 4],
    version: u16,
    node_id: NodeId,
    nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    node_id: NodeId,
    nonce: [u8; 32],
    proof: [u8; TAG_LEN],
}

#[derive(Serialize, Deserialize)]
struct Proof {
    proof: [u8; TAG_LEN],
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// The node id announced in a handshake's first frame body (unauthenticated:
/// only for diagnostics and test fault injection, never for trust).
pub fn announced_node_id(hello_body: &[u8]) -> Result<NodeId, ChannelError> {
    let hello: Hello = decode(hello_body)?;
    if hello.magic != MAGIC {
        return Err(ChannelError::BadHandshake("wrong magic"));
    }
    Ok(hello.node_id)
}

async fn send_plain<T: Serialize>(stream: &mut TcpStream, msg: &T) -> Result<(), ChannelError> {
    let bytes = encode(msg)?;
    write_frame(stream, &[&bytes], MAX_HANDSHAKE_FRAME).await?;
    Ok(())
}

async fn recv_plain<T: DeserializeOwned>(stream: &mut TcpStream) -> Result<T, ChannelError> {
    let body = read_frame(stream, MAX_HANDSHAKE_FRAME).await?;
    Ok(decode(&body)?)
}

impl SecureChannel {
    /// Connects to `addr` and authenticates both ends, within `limit`.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        my_id: NodeId,
        secret: &ClusterSecret,
        max_frame: usize,
        limit: Duration,
    ) -> Result<Self, ChannelError> {
        within(limit, async {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(ChannelError::Connect)?;
            stream.set_nodelay(true).map_err(ChannelError::Connect)?;
            let my_nonce = nonce();
            send_plain(
                &mut stream,
                &Hello {
                    magic: MAGIC,
                    version: PROTOCOL_VERSION,
                    node_id: my_id,
                    nonce: my_nonce,
                },
            )
            .await?;
            let challenge: Challenge = recv_plain(&mut stream).await?;
            if !secret.verify(
                &[
                    LABEL_SERVER,
                    &my_nonce,
                    &challenge.nonce,
                    &challenge.node_id.to_be_bytes(),
                ],
                &challenge.proof,
            ) {
                return Err(ChannelError::AuthFailed(
                    "server does not know the cluster secret",
                ));
            }
            let proof = secret.mac(&[
                LABEL_CLIENT,
                &my_nonce,
                &challenge.nonce,
                &my_id.to_be_bytes(),
            ]);
            send_plain(&mut stream, &Proof { proof }).await?;
            let key = secret.mac(&[LABEL_SESSION, &my_nonce, &challenge.nonce]);
            Ok(SecureChannel {
                stream,
                key,
                send_dir: DIR_CLIENT_TO_SERVER,
                send_seq: 0,
                recv_seq: 0,
                max_frame,
                peer_id: challenge.node_id,
            })
        })
        .await
    }

    /// Authenticates an accepted connection, within `limit`.
    pub async fn accept(
        mut stream: TcpStream,
        my_id: NodeId,
        secret: &ClusterSecret,
        max_frame: usize,
        limit: Duration,
    ) -> Result<Self, ChannelError> {
        within(limit, async {
            stream.set_nodelay(true).map_err(ChannelError::Connect)?;
            let hello: Hello = recv_plain(&mut stream).await?;
            if hello.magic != MAGIC {
                return Err(ChannelError::BadHandshake("wrong magic"));
            }
            if hello.version != PROTOCOL_VERSION {
                return Err(ChannelError::BadHandshake("unsupported protocol version"));
            }
            let my_nonce = nonce();
            let proof = secret.mac(&[LABEL_SERVER, &hello.nonce, &my_nonce, &my_id.to_be_bytes()]);
            send_plain(
                &mut stream,
                &Challenge {
                    node_id: my_id,
                    nonce: my_nonce,
                    proof,
                },
            )
            .await?;
            let client: Proof = recv_plain(&mut stream).await?;
            if !secret.verify(
                &[
                    LABEL_CLIENT,
                    &hello.nonce,
                    &my_nonce,
                    &hello.node_id.to_be_bytes(),
                ],
                &client.proof,
            ) {
                return Err(ChannelError::AuthFailed(
                    "client does not know the cluster secret",
                ));
            }
            let key = secret.mac(&[LABEL_SESSION, &hello.nonce, &my_nonce]);
            Ok(SecureChannel {
                stream,
                key,
                send_dir: DIR_SERVER_TO_CLIENT,
                send_seq: 0,
                recv_seq: 0,
                max_frame,
                peer_id: hello.node_id,
            })
        })
        .await
    }
}
