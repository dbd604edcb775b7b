//! Health probes against real listeners on loopback.

use std::time::Duration;

use edgelb_node::health::{probe, Probe, ProbeError};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpListener};

/// Serves `answer` to each of up to `count` connections, then stops.
async fn http_server(answer: &'static [u8], count: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..count {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut req = [0u8; 512];
            let _ = s.read(&mut req).await;
            let _ = s.write_all(answer).await;
        }
    });
    addr
}

#[tokio::test]
async fn tcp_probe_up_and_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(
        probe(addr, &Probe::Tcp, Duration::from_secs(2)).await,
        Ok(())
    );
    drop(listener);
    let err = probe(addr, &Probe::Tcp, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn http_probe_checks_the_status() {
    let ok = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1).await;
    let http = Probe::Http {
        path: "/healthz".into(),
        expect_status: 200,
    };
    assert_eq!(probe(ok, &http, Duration::from_secs(2)).await, Ok(()));

    let busy = http_server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", 1).await;
    assert_eq!(
        probe(busy, &http, Duration::from_secs(2)).await,
        Err(ProbeError::Status(503))
    );

    let garbage = http_server(b"hello there, not http at all\r\n", 1).await;
    assert_eq!(
        probe(garbage, &http, Duration::from_secs(2)).await,
        Err(ProbeError::Malformed)
    );
}

#[tokio::test]
async fn http_probe_times_out_on_a_silent_server() {
    // Accepts (via the backlog) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = Probe::Http {
        path: "/".into(),
        expect_status: 200,
    };
    assert_eq!(
        probe(addr, &http, Duration::from_millis(200)).await,
        Err(ProbeError::Timeout)
    );
    drop(listener);
}
