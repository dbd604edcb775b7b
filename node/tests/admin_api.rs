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

/// One server for the whole property below, on a runtime that outlives its
/// cases: the point is that the same server keeps serving.
fn shared_server() -> &'static (tokio::runtime::Runtime, Server) {
    static SERVER: std::sync::OnceLock<(tokio::runtime::Runtime, Server)> =
        std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let srv = rt.block_on(server());
        (rt, srv)
    })
}

/// Reads whatever the server sends until it closes (bounded in bytes and
/// time); returns it, or `None` if the server kept the connection open.
async fn until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) if got.len() + n <= 1 << 16 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

fn garbage_body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let valid = serde_json::to_vec(&Request::BackendSetWeight {
        vip: edgelb_consensus::VipKey {
            address: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: edgelb_consensus::Protocol::Tcp,
        },
        address: "10.0.0.1".parse().unwrap(),
        weight: 3,
    })
    .unwrap();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            any::<prop::sample::Index>()
        )
            .prop_map(move |(flips, cut)| {
                let mut m = valid.clone();
                for (i, b) in flips {
                    let i = i.index(m.len());
                    m[i] = b;
                }
                m.truncate(cut.index(m.len() + 1));
                m
            }),
    ]
}

proptest::proptest! {
    // A fixed, small number of live cases: each opens real connections.
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Garbage before the hello gets an error or a closed connection; a
    /// garbage request after it gets exactly the answer its decoding
    /// predicts (an error, or the handler's answer if it happens to be a
    /// valid request) and the connection goes on serving; and every time a
    /// new client is served by the same server.
    #[test]
    fn garbage_connections_never_stop_the_server(
        raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        hello in garbage_body(),
        body in garbage_body(),
    ) {
        let (rt, srv) = shared_server();
        rt.block_on(async {
            let seen = srv.handler.seen.lock().unwrap().len();
            // Before authentication: a raw stream is dropped (perhaps after
            // an error frame) ...
            let mut s = TcpStream::connect(&srv.addr).await.unwrap();
            let _ = s.write_all(&raw).await;
            let _ = s.shutdown().await;
            let got = until_closed(&mut s).await.expect("the server closes a garbage stream");
            if let Ok(r) = read_frame::<_, Response>(&mut got.as_slice()).await {
                assert!(matches!(r, Response::Error { .. }), "{r:?}");
            }
            // ... and a whole frame that is no hello gets exactly one error.
            let mut s = TcpStream::connect(&srv.addr).await.unwrap();
            s.write_all(&(hello.len() as u32).to_be_bytes()).await.unwrap();
            s.write_all(&hello).await.unwrap();
            let got = until_closed(&mut s).await.expect("the server closes after a bad hello");
            let mut rest = got.as_slice();
            let r: Response = read_frame(&mut rest).await.expect("one answer frame");
            assert!(matches!(r, Response::Error { .. }), "{r:?}");
            assert!(rest.is_empty(), "more than one answer");

            // After authentication.
            let mut s = authenticated(&srv.addr).await;
            s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
            let r: Response = read_frame(&mut s).await.unwrap();
            let valid = serde_json::from_slice::<Request>(&body).is_ok();
            match (&r, valid) {
                (Response::Written { .. }, true) => {}
                (Response::Error { message }, false) => {
                    assert!(message.contains("malformed request"), "{message}")
                }
                _ => panic!("valid={valid} but the server answered {r:?}"),
            }
            write_frame(&mut s, &Request::Status).await.unwrap();
            let r: Response = read_frame(&mut s).await.unwrap();
            assert!(matches!(r, Response::Written { .. }), "{r:?}");

            let mut client = AdminClient::connect(&srv.addr, TOKEN, Duration::from_secs(5))
                .await
                .expect("a new client is served");
            assert!(matches!(
                client.request(&Request::Status).await.unwrap(),
                Response::Written { .. }
            ));
            let handled = srv.handler.seen.lock().unwrap().len() - seen;
            assert_eq!(handled, 2 + usize::from(valid), "only valid requests reach the handler");
        });
    }
}
