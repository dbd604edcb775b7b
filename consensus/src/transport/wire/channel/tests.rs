//! The channel: pinned MAC construction, and tampered, replayed,
//! reflected, garbage and oversized frames refused.

use super::handshake::LABEL_SESSION;
use super::*;

#[test]
fn golden_session_key_and_tag() {
    // Pins the MAC construction (vectors computed independently with
    // Python's hmac module): changing it breaks mixed-version clusters.
    let secret = ClusterSecret::new(b"0123456789abcdef".to_vec()).unwrap();
    let key = secret.mac(&[LABEL_SESSION, &[1u8; 32], &[2u8; 32]]);
    let tag = mac_with(
        &key,
        &[&[DIR_CLIENT_TO_SERVER], &7u64.to_be_bytes(), b"payload"],
    );
    assert_eq!(hex(&key), GOLDEN_KEY);
    assert_eq!(hex(&tag), GOLDEN_TAG);
    assert!(verify_with(
        &key,
        &[&[0], &7u64.to_be_bytes(), b"payload"],
        &tag
    ));
    assert!(!verify_with(
        &key,
        &[&[1], &7u64.to_be_bytes(), b"payload"],
        &tag
    ));
    assert!(!verify_with(
        &key,
        &[&[0], &8u64.to_be_bytes(), b"payload"],
        &tag
    ));
}

const GOLDEN_KEY: &str = "0b3a02382644989de909d41fa7234461a8f069f026d4da8262360685f58dc36e";
const GOLDEN_TAG: &str = "e362c20f3910388a0ec3dd173d87f35f4e86f3808eaa1c8c1937752e419b768b";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn pair(max_frame: usize) -> (SecureChannel, SecureChannel) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = ClusterSecret::new(b"0123456789abcdef".to_vec()).unwrap();
    let s2 = secret.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        SecureChannel::accept(stream, 1, &s2, max_frame, Duration::from_secs(5)).await
    });
    let client = SecureChannel::connect(addr, 2, &secret, max_frame, Duration::from_secs(5))
        .await
        .unwrap();
    let server = server.await.unwrap().unwrap();
    assert_eq!((client.peer_id(), server.peer_id()), (1, 2));
    (client, server)
}

/// Writes a raw frame body on the channel's socket.
async fn raw(c: &mut SecureChannel, body: &[u8]) {
    write_frame(&mut c.stream, &[body], usize::MAX)
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_flow_both_ways() {
    let (mut client, mut server) = pair(1024).await;
    client.send(&"ping".to_string()).await.unwrap();
    assert_eq!(server.recv::<String>().await.unwrap(), "ping");
    server.send(&42u64).await.unwrap();
    assert_eq!(client.recv::<u64>().await.unwrap(), 42);
}

#[tokio::test]
async fn tampered_frames_are_rejected() {
    let (mut client, mut server) = pair(1024).await;
    let payload = encode(&"hello".to_string()).unwrap();
    let tag = mac_with(
        &client.key,
        &[&[DIR_CLIENT_TO_SERVER], &0u64.to_be_bytes(), &payload],
    );
    let mut frame = payload.clone();
    frame.extend_from_slice(&tag);
    frame[1] ^= 1;
    raw(&mut client, &frame).await;
    assert!(matches!(
        server.recv::<String>().await,
        Err(ChannelError::AuthFailed(_))
    ));
}

#[tokio::test]
async fn replayed_and_reflected_frames_are_rejected() {
    let (mut client, mut server) = pair(1024).await;
    let payload = encode(&"once".to_string()).unwrap();
    let tag = mac_with(
        &client.key,
        &[&[DIR_CLIENT_TO_SERVER], &0u64.to_be_bytes(), &payload],
    );
    let mut frame = payload.clone();
    frame.extend_from_slice(&tag);
    raw(&mut client, &frame).await;
    assert_eq!(server.recv::<String>().await.unwrap(), "once");
    raw(&mut client, &frame).await;
    assert!(matches!(
        server.recv::<String>().await,
        Err(ChannelError::AuthFailed(_))
    ));
    // A client frame sent back to the client (reflection) fails too.
    let (mut client, mut server) = pair(1024).await;
    let _ = &mut server;
    raw(&mut server, &frame).await;
    assert!(matches!(
        client.recv::<String>().await,
        Err(ChannelError::AuthFailed(_))
    ));
}

#[tokio::test]
async fn authenticated_garbage_and_oversized_frames_are_errors() {
    let (mut client, mut server) = pair(64).await;
    let garbage = [0xffu8; 9];
    let tag = mac_with(
        &client.key,
        &[&[DIR_CLIENT_TO_SERVER], &0u64.to_be_bytes(), &garbage],
    );
    let mut frame = garbage.to_vec();
    frame.extend_from_slice(&tag);
    raw(&mut client, &frame).await;
    assert!(matches!(
        server.recv::<String>().await,
        Err(ChannelError::Malformed(_))
    ));
    let (mut client, mut server) = pair(64).await;
    assert!(matches!(
        client.send(&vec![0u8; 100]).await,
        Err(ChannelError::Frame(FrameError::TooLarge { .. }))
    ));
    raw(&mut client, &[0u8; 100]).await;
    assert!(matches!(
        server.recv::<Vec<u8>>().await,
        Err(ChannelError::Frame(FrameError::TooLarge { .. }))
    ));
    let (mut client, mut server) = pair(64).await;
    raw(&mut client, &[0u8; 20]).await;
    assert!(matches!(
        server.recv::<Vec<u8>>().await,
        Err(ChannelError::AuthFailed(_))
    ));
}

#[test]
fn short_secrets_are_refused() {
    assert!(matches!(
        ClusterSecret::new(b"short".to_vec()),
        Err(ChannelError::WeakSecret(5))
    ));
}
