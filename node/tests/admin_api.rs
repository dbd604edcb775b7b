//! The admin API's server over real TCP: authentication, and bad input
//! (malformed, oversized, truncated frames) answered or refused without
//! harming the server or other connections. The request handler here only
//! records requests; the daemon's own handler is exercised by the sim tests.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use edgelb_node::admin::{
    client::AdminClient,
    frame::{read_frame, write_frame, MAX_FRAME},
    protocol::{Hello, Request, Response},
    server::{bind, serve, AdminHandler},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};

const TOKEN: &str = "admin-token-for-tests-0123456789";

/// Answers every request with the number of requests seen so far.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Request>>,
}

impl AdminHandler for Recorder {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            let mut seen = self.seen.lock().unwrap();
            seen.push(request);
            Response::Written {
                version: seen.len() as u64,
            }
        })
    }
}

struct Server {
    addr: String,
    handler: Arc<Recorder>,
    _stop: watch::Sender<bool>,
}

async fn server() -> Server {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(Recorder::default());
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        Arc::new(TOKEN.as_bytes().to_vec()),
        handler.clone(),
        stop_rx,
    ));
    Server {
        addr,
        handler,
        _stop: stop,
    }
}

/// A raw connection that has presented the right token.
async fn authenticated(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(
        &mut s,
        &Hello {
            token: TOKEN.into(),
        },
    )
    .await
    .unwrap();
    let r: Response = read_frame(&mut s).await.unwrap();
    assert_eq!(r, Response::Written { version: 0 });
    s
}

/// The server closed the connection at once (well inside the 5 s hello
/// timeout): a read returns end of file.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn the_right_token_gets_answers_and_a_wrong_one_nothing() {
    let srv = server().await;
    let mut client = AdminClient::connect(&srv.addr, TOKEN, Duration::from_secs(5))
        .await
        .expect("connect");
    assert_eq!(
        client.request(&Request::Status).await.unwrap(),
        Response::Written { version: 1 }
    );

    let wrong = AdminClient::connect(
        &srv.addr,
        "not-the-admin-token-000000000000",
        Duration::from_secs(5),
    )
    .await;
    let err = wrong.err().expect("a wrong token is refused").to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert_eq!(
        srv.handler.seen.lock().unwrap().len(),
        1,
        "a refused client reached the handler"
    );
}

#[tokio::test]
async fn a_malformed_request_is_answered_and_the_connection_stays_usable() {
    let srv = server().await;
    let mut s = authenticated(&srv.addr).await;
    let garbage = br#"{"VipAdd":{"key":"not a vip"}}"#;
    s.write_all(&(garbage.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(garbage).await.unwrap();
    let r: Response = read_frame(&mut s).await.unwrap();
    match r {
        Response::Error { message } => assert!(message.contains("malformed request"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    write_frame(&mut s, &Request::Status).await.unwrap();
    let r: Response = read_frame(&mut s).await.unwrap();
    assert_eq!(
        r,
        Response::Written { version: 1 },
        "the next request is served"
    );
}

#[tokio::test]
async fn oversized_and_truncated_frames_end_only_their_own_connection() {
    let srv = server().await;
    let mut good = AdminClient::connect(&srv.addr, TOKEN, Duration::from_secs(5))
        .await
        .unwrap();

    // Before authentication a frame may not exceed a hello's size.
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    s.write_all(&(64 * 1024u32).to_be_bytes()).await.unwrap();
    assert!(
        closed(&mut s).await,
        "a large unauthenticated frame must close the connection"
    );

    // A hello that is not JSON is refused with a message.
    let mut s = TcpStream::connect(&srv.addr).await.unwrap();
    s.write_all(&3u32.to_be_bytes()).await.unwrap();
    s.write_all(b"\xff\x00{").await.unwrap();
    let r: Response = read_frame(&mut s).await.unwrap();
    assert!(
        matches!(r, Response::Error { ref message } if message.contains("malformed hello")),
        "{r:?}"
    );

    // After authentication, more than MAX_FRAME is refused.
    let mut s = authenticated(&srv.addr).await;
    s.write_all(&(MAX_FRAME + 1).to_be_bytes()).await.unwrap();
    assert!(
        closed(&mut s).await,
        "an oversized frame must close the connection"
    );

    // A truncated frame: the length promises more than ever arrives.
    let mut s = authenticated(&srv.addr).await;
    s.write_all(&100u32.to_be_bytes()).await.unwrap();
    s.write_all(b"{\"Sta").await.unwrap();
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await);

    // Nothing above reached the handler; the good client is still served.
    assert_eq!(
        good.request(&Request::Status).await.unwrap(),
        Response::Written { version: 1 }
    );
    assert_eq!(srv.handler.seen.lock().unwrap().len(), 1);
}
