//! The speaker against scripted peers on loopback TCP: protocol behaviour
//! and bad input, message by message.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edgelb_bgp::wire::NotificationCode;
use edgelb_bgp::{
    BgpSpeaker, DesiredRoutes, PeerConfig, PeerMode, PeerState, RouteAttributes, SpeakerConfig,
};
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use support::fake_peer::{listen, update_prefixes, FakePeer, WAIT};
use testbed::wait::{wait_for_async, DEFAULT_POLL};

const LOCAL_ASN: u32 = 4_200_000_010;
const PEER_ASN: u32 = 65000;

fn peer(ip: Ipv4Addr, port: u16) -> PeerConfig {
    PeerConfig {
        port,
        hold_time_secs: 30,
        // Same loopback for both ends: an explicit IPv6 next hop enables IPv6 routes.
        next_hop_v6: Some("fd00::10".parse().unwrap()),
        connect_retry_min: Duration::from_millis(100),
        connect_retry_max: Duration::from_millis(400),
        ..PeerConfig::new(IpAddr::V4(ip), PEER_ASN)
    }
}

fn config(peers: Vec<PeerConfig>) -> SpeakerConfig {
    SpeakerConfig {
        local_asn: LOCAL_ASN,
        router_id: Ipv4Addr::new(10, 255, 0, 1),
        listen: None,
        graceful_restart: None,
        peers,
    }
}

fn routes(prefixes: &[&str]) -> DesiredRoutes {
    let mut d = DesiredRoutes::new();
    for p in prefixes {
        d.insert(p.parse().unwrap(), RouteAttributes::default())
            .unwrap();
    }
    d
}

/// Polls the peer's snapshot every 20 ms until `f` accepts it; panics with
/// the last snapshot after [`WAIT`].
async fn wait_for_peer(
    speaker: &BgpSpeaker,
    addr: Ipv4Addr,
    what: &str,
    f: impl Fn(&edgelb_bgp::PeerSnapshot) -> bool,
) {
    let mut last = None;
    let waited = wait_for_async(what, WAIT, DEFAULT_POLL, || {
        let snap = speaker.peer(IpAddr::V4(addr)).expect("peer exists");
        let done = f(&snap);
        last = Some(snap);
        async move { done.then_some(()) }
    })
    .await;
    if let Err(timeout) = waited {
        panic!("{timeout}: {:?}", last.expect("polled at least once"));
    }
}

#[tokio::test]
async fn announces_withdraws_refreshes_and_shuts_down() {
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let (listener, port) = listen(ip).await;
    let speaker = BgpSpeaker::start(config(vec![peer(ip, port)]))
        .await
        .unwrap();
    speaker.set_desired(routes(&["192.0.2.10/32", "2001:db8::10/128"]));
    let mut p = FakePeer::accept(&listener).await;
    p.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 2))
        .await;
    assert_eq!(
        p.initial_table(2).await,
        vec!["192.0.2.10/32", "2001:db8::10/128"]
    );
    wait_for_peer(&speaker, ip, "2 prefixes", |s| {
        s.state == PeerState::Established && s.prefixes_announced == 2
    })
    .await;

    speaker.set_desired(routes(&["192.0.2.10/32"]));
    let (ann, wd) = update_prefixes(&p.recv_non_keepalive().await.unwrap());
    assert_eq!((ann, wd), (vec![], vec!["2001:db8::10/128".to_string()]));

    speaker.set_desired(routes(&["192.0.2.10/32", "192.0.2.11/32"]));
    let (ann, wd) = update_prefixes(&p.recv_non_keepalive().await.unwrap());
    assert_eq!((ann, wd), (vec!["192.0.2.11/32".to_string()], vec![]));

    let rr =
        BgpRouteRefreshMessage::new(AddressType::Ipv4Unicast, RouteRefreshSubcode::NormalRequest);
    p.send(BgpMessage::RouteRefresh(rr)).await;
    let (mut ann, _) = update_prefixes(&p.recv_non_keepalive().await.unwrap());
    ann.sort();
    assert_eq!(ann, vec!["192.0.2.10/32", "192.0.2.11/32"]);
    wait_for_peer(&speaker, ip, "refresh counted", |s| {
        s.route_refreshes_in == 1
    })
    .await;

    let snap = speaker.peer(IpAddr::V4(ip)).unwrap();
    assert!(
        snap.messages_out >= 6 && snap.updates_out >= 5 && snap.messages_in >= 3,
        "{snap:?}"
    );
    speaker.shutdown().await;
    assert_eq!(
        p.expect_notification().await,
        NotificationCode {
            code: 6,
            subcode: 2
        }
    );
    assert_eq!(p.recv().await, None, "connection closed after Cease");
}

#[tokio::test]
async fn hold_timer_expiry_sends_notification_and_reconnects() {
    let ip = Ipv4Addr::new(127, 0, 0, 1);
    let (listener, port) = listen(ip).await;
    let cfg = PeerConfig {
        hold_time_secs: 3,
        ..peer(ip, port)
    };
    let speaker = BgpSpeaker::start(config(vec![cfg])).await.unwrap();
    let mut p = FakePeer::accept(&listener).await;
    p.establish(PEER_ASN, 3, Ipv4Addr::new(10, 255, 0, 2)).await;
    // Silent from here on: the speaker must give up after 3 s.
    let started = std::time::Instant::now();
    assert_eq!(
        p.expect_notification().await,
        NotificationCode {
            code: 4,
            subcode: 0
        }
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "expired too early: {:?}",
        started.elapsed()
    );
    wait_for_peer(&speaker, ip, "hold timer error recorded", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("4/0"))
    })
    .await;
    // Active mode: it comes back.
    let mut again = FakePeer::accept(&listener).await;
    again
        .establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 2))
        .await;
    wait_for_peer(&speaker, ip, "re-established", |s| {
        s.state == PeerState::Established && s.established_count == 2
    })
    .await;
    speaker.shutdown().await;
}

/// Malformed input from one peer ends only that session, with the right code.
#[tokio::test]
async fn bad_input_ends_only_that_session() {
    let good_ip = Ipv4Addr::new(127, 0, 0, 2);
    let (good_listener, good_port) = listen(good_ip).await;
    let bad_ip = Ipv4Addr::new(127, 0, 0, 3);
    let (bad_listener, bad_port) = listen(bad_ip).await;
    let speaker = BgpSpeaker::start(config(vec![
        peer(good_ip, good_port),
        peer(bad_ip, bad_port),
    ]))
    .await
    .unwrap();
    speaker.set_desired(routes(&["192.0.2.10/32"]));
    let mut good = FakePeer::accept(&good_listener).await;
    good.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 2))
        .await;
    assert_eq!(good.initial_table(2).await, vec!["192.0.2.10/32"]);

    let header = |len: u16, ty: u8| {
        let mut h = vec![0xffu8; 16];
        h.extend_from_slice(&len.to_be_bytes());
        h.push(ty);
        h
    };
    let unknown_well_known = {
        let attrs = [0x40u8, 99, 1, 0];
        let mut m = header(27, 2);
        m.extend_from_slice(&[0, 0, 0, 4]);
        m.extend_from_slice(&attrs);
        m
    };
    let mut bad_marker = header(19, 4);
    bad_marker[0] = 0;
    let attr_list_too_long = {
        // Total Path Attribute Length says 100, the message holds none.
        let mut m = header(23, 2);
        m.extend_from_slice(&[0, 0, 0, 100]);
        m
    };
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        ("bad marker", bad_marker, (1, 1)),
        ("length too small", header(18, 4), (1, 2)),
        ("length too large", header(4097, 2), (1, 2)),
        ("unknown message type", header(19, 42), (1, 3)),
        ("unknown well-known attribute", unknown_well_known, (3, 2)),
        (
            "attribute list longer than message",
            attr_list_too_long,
            (3, 1),
        ),
    ];
    let in_before = speaker.peer(IpAddr::V4(good_ip)).unwrap().messages_in;
    for (name, bytes, (code, subcode)) in cases {
        let mut bad = FakePeer::accept(&bad_listener).await;
        bad.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 3))
            .await;
        bad.send_raw(&bytes).await;
        let got = bad.expect_notification().await;
        assert_eq!(
            (got.code, got.subcode),
            (code, subcode),
            "{name}: got {got}"
        );
        assert_eq!(bad.recv().await, None, "{name}: connection must close");
        let good_snap = speaker.peer(IpAddr::V4(good_ip)).unwrap();
        assert_eq!(
            good_snap.state,
            PeerState::Established,
            "{name}: other session disturbed"
        );
        assert_eq!(
            good_snap.established_count, 1,
            "{name}: other session flapped"
        );
    }
    // The good session is alive: it answers a KEEPALIVE-driven exchange.
    good.send(BgpMessage::KeepAlive).await;
    wait_for_peer(&speaker, good_ip, "good peer still counted", |s| {
        s.messages_in > in_before
    })
    .await;
    speaker.shutdown().await;
    assert_eq!(
        good.expect_notification().await,
        NotificationCode {
            code: 6,
            subcode: 2
        }
    );
}

#[tokio::test]
async fn open_errors_get_open_notifications() {
    let ip = Ipv4Addr::new(127, 0, 0, 4);
    let (listener, port) = listen(ip).await;
    let speaker = BgpSpeaker::start(config(vec![peer(ip, port)]))
        .await
        .unwrap();
    let mut p = FakePeer::accept(&listener).await;
    let Some(BgpMessage::Open(_)) = p.recv().await else {
        panic!("expected OPEN")
    };
    p.send(support::fake_peer::open(
        65999,
        30,
        Ipv4Addr::new(10, 255, 0, 2),
    ))
    .await;
    assert_eq!(
        p.expect_notification().await,
        NotificationCode {
            code: 2,
            subcode: 2
        }
    );
    let mut p = FakePeer::accept(&listener).await;
    let Some(BgpMessage::Open(_)) = p.recv().await else {
        panic!("expected OPEN")
    };
    p.send(support::fake_peer::open(
        PEER_ASN,
        1,
        Ipv4Addr::new(10, 255, 0, 2),
    ))
    .await;
    assert_eq!(
        p.expect_notification().await,
        NotificationCode {
            code: 2,
            subcode: 6
        }
    );
    speaker.shutdown().await;
}

#[tokio::test]
async fn passive_peer_is_accepted_and_strangers_are_refused() {
    let peer_ip = Ipv4Addr::new(127, 0, 0, 5);
    let cfg = SpeakerConfig {
        listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        ..config(vec![PeerConfig {
            mode: PeerMode::Passive,
            ..peer(peer_ip, 0)
        }])
    };
    let speaker = BgpSpeaker::start(cfg).await.unwrap();
    let addr = speaker.listen_addr().unwrap();
    speaker.set_desired(routes(&["198.51.100.0/24"]));
    let mut stranger = FakePeer::connect(Ipv4Addr::new(127, 0, 0, 6), addr).await;
    assert_eq!(
        stranger.expect_notification().await,
        NotificationCode {
            code: 6,
            subcode: 5
        }
    );
    let mut p = FakePeer::connect(peer_ip, addr).await;
    p.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 5))
        .await;
    assert_eq!(p.initial_table(2).await, vec!["198.51.100.0/24"]);
    // The peer drops the TCP connection: the speaker waits for it again.
    drop(p);
    wait_for_peer(&speaker, peer_ip, "back to Active", |s| {
        s.state == PeerState::Active
    })
    .await;
    let mut p = FakePeer::connect(peer_ip, addr).await;
    p.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 5))
        .await;
    assert_eq!(p.initial_table(2).await, vec!["198.51.100.0/24"]);
    speaker.shutdown().await;
}

/// Garbage from one peer, many times over: each bad session ends on its own
/// (NOTIFICATION or EOF) and the other session never notices.
#[tokio::test]
async fn random_garbage_never_disturbs_other_sessions() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x00ed_9e1b);
    let good_ip = Ipv4Addr::new(127, 0, 0, 7);
    let (good_listener, good_port) = listen(good_ip).await;
    let bad_ip = Ipv4Addr::new(127, 0, 0, 8);
    let (bad_listener, bad_port) = listen(bad_ip).await;
    let mut bad_cfg = peer(bad_ip, bad_port);
    bad_cfg.connect_retry_min = Duration::from_millis(1);
    bad_cfg.connect_retry_max = Duration::from_millis(1);
    let speaker = BgpSpeaker::start(config(vec![peer(good_ip, good_port), bad_cfg]))
        .await
        .unwrap();
    speaker.set_desired(routes(&["192.0.2.10/32"]));
    let mut good = FakePeer::accept(&good_listener).await;
    good.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 7))
        .await;
    assert_eq!(good.initial_table(2).await, vec!["192.0.2.10/32"]);

    let mut notified = 0;
    for round in 0..100 {
        let mut bad = FakePeer::accept(&bad_listener).await;
        bad.establish(PEER_ASN, 30, Ipv4Addr::new(10, 255, 0, 8))
            .await;
        bad.initial_table(2).await;
        let body_len = rng.gen_range(0..200usize);
        let mut garbage: Vec<u8> = if round % 2 == 0 {
            // A valid header with a random type and body: reaches the parsers.
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&((19 + body_len) as u16).to_be_bytes());
            m.push(rng.gen_range(1..=6));
            m
        } else {
            Vec::new()
        };
        garbage.extend((0..body_len).map(|_| rng.r#gen::<u8>()));
        bad.send_raw(&garbage).await;
        // Either a NOTIFICATION and close, or (a valid-looking message) nothing;
        // then we hang up ourselves.
        let outcome =
            tokio::time::timeout(Duration::from_millis(300), bad.recv_non_keepalive()).await;
        if let Ok(Some(BgpMessage::Notification(_))) = outcome {
            notified += 1;
        }
        drop(bad);
    }
    assert!(
        notified >= 50,
        "most garbage must be answered with a NOTIFICATION ({notified})"
    );
    let snap = speaker.peer(IpAddr::V4(good_ip)).unwrap();
    assert_eq!(snap.state, PeerState::Established);
    assert_eq!(snap.established_count, 1, "the good session never flapped");
    speaker.set_desired(routes(&["192.0.2.10/32", "192.0.2.11/32"]));
    let (ann, _) = update_prefixes(&good.recv_non_keepalive().await.unwrap());
    assert_eq!(
        ann,
        vec!["192.0.2.11/32".to_string()],
        "the good session still works"
    );
    speaker.shutdown().await;
}

/// With a 3 s hold time the speaker sends a KEEPALIVE about every second and
/// a peer that answers in kind keeps the session up indefinitely.
#[tokio::test]
async fn keepalives_keep_a_quiet_session_up() {
    let ip = Ipv4Addr::new(127, 0, 0, 9);
    let (listener, port) = listen(ip).await;
    let cfg = PeerConfig {
        hold_time_secs: 3,
        ..peer(ip, port)
    };
    let speaker = BgpSpeaker::start(config(vec![cfg])).await.unwrap();
    let mut p = FakePeer::accept(&listener).await;
    p.establish(PEER_ASN, 3, Ipv4Addr::new(10, 255, 0, 9)).await;
    p.initial_table(2).await;
    let started = tokio::time::Instant::now();
    let mut keepalives = 0;
    while started.elapsed() < Duration::from_secs(5) {
        match p.recv().await {
            Some(BgpMessage::KeepAlive) => {
                keepalives += 1;
                p.send(BgpMessage::KeepAlive).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Loose bounds: about one per second, neither silent nor flooding.
    assert!(
        (3..=10).contains(&keepalives),
        "{keepalives} keepalives in 5 s"
    );
    let snap = speaker.peer(IpAddr::V4(ip)).unwrap();
    assert_eq!(
        (snap.state, snap.established_count),
        (PeerState::Established, 1)
    );
    speaker.shutdown().await;
}

/// PeerMode::Both with a connection each way (RFC 4271 section 6.8): the
/// connection opened by the higher BGP identifier survives, the other gets
/// Cease / Connection Collision Resolution.
#[tokio::test]
async fn collision_keeps_the_connection_of_the_higher_identifier() {
    for (peer_id, outgoing_survives) in [
        (Ipv4Addr::new(10, 255, 0, 2), false), // peer's id is higher than ours (10.255.0.1)
        (Ipv4Addr::new(10, 255, 0, 0), true),  // ours is higher
    ] {
        let peer_ip = Ipv4Addr::new(127, 0, 0, 10);
        let (listener, port) = listen(peer_ip).await;
        let cfg = SpeakerConfig {
            listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            ..config(vec![PeerConfig {
                mode: PeerMode::Both,
                ..peer(peer_ip, port)
            }])
        };
        let speaker = BgpSpeaker::start(cfg).await.unwrap();
        speaker.set_desired(routes(&["192.0.2.10/32"]));
        let mut out = FakePeer::accept(&listener).await;
        let mut inc = FakePeer::connect(peer_ip, speaker.listen_addr().unwrap()).await;
        for p in [&mut out, &mut inc] {
            let Some(BgpMessage::Open(_)) = p.recv().await else {
                panic!("expected OPEN")
            };
        }
        // OPEN on the speaker's outgoing connection first, then on ours.
        out.send(support::fake_peer::open(PEER_ASN, 30, peer_id))
            .await;
        assert_eq!(out.recv().await, Some(BgpMessage::KeepAlive));
        inc.send(support::fake_peer::open(PEER_ASN, 30, peer_id))
            .await;
        let (mut winner, mut loser) = if outgoing_survives {
            (out, inc)
        } else {
            (inc, out)
        };
        let cease7 = NotificationCode {
            code: 6,
            subcode: 7,
        };
        assert_eq!(
            loser.expect_notification().await,
            cease7,
            "peer id {peer_id}"
        );
        assert_eq!(loser.recv().await, None);
        if !outgoing_survives {
            assert_eq!(winner.recv().await, Some(BgpMessage::KeepAlive));
        }
        winner.send(BgpMessage::KeepAlive).await;
        assert_eq!(winner.initial_table(2).await, vec!["192.0.2.10/32"]);
        wait_for_peer(&speaker, peer_ip, "one established session", |s| {
            s.state == PeerState::Established
                && s.established_count == 1
                && s.prefixes_announced == 1
        })
        .await;
        speaker.shutdown().await;
        assert_eq!(
            winner.expect_notification().await,
            NotificationCode {
                code: 6,
                subcode: 2
            }
        );
    }
}
