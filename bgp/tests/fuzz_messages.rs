//! Property tests over random and mutated bytes on the message path: the
//! decoder and the session never panic, and every rejection carries a valid
//! NOTIFICATION code. Bounded by the case count: PROPTEST_CASES, default
//! 2048 (a few hundredths of a second) in the plain test run; CI's
//! scripts/test.sh runs it again with a million cases per property (~20 s).

use std::sync::Arc;
use std::time::Instant;

use edgelb_bgp::fsm::{Action, Event, Session, SessionParams};
use edgelb_bgp::negotiation::LocalOpen;
use edgelb_bgp::wire::{self, NotificationCode};
use edgelb_bgp::{DesiredRoutes, RouteAttributes};
use netgauze_bgp_pkt::capabilities::{BgpCapability, FourOctetAsCapability};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use proptest::prelude::*;

fn ctx() -> BgpParsingContext {
    wire::parsing_context()
}

/// A valid UPDATE as produced by our own encoder: a realistic seed to mutate.
fn seed_update() -> Vec<u8> {
    // ORIGIN IGP; AS_PATH [65010 65010]; MED 50; COMMUNITIES 65010:100; NEXT_HOP; NLRI 192.0.2.10/32.
    let hex = "ffffffffffffffffffffffffffffffff00440200000028400101005002000a02020000fdf20000fdf2\
               80040400000032d0080004fdf200644003040a01000220c000020a";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn seed_open() -> Vec<u8> {
    let open = BgpOpenMessage::new(
        65000,
        90,
        "10.0.0.1".parse().unwrap(),
        vec![BgpOpenMessageParameter::new_capabilities(vec![
            BgpCapability::RouteRefresh,
            BgpCapability::FourOctetAs(FourOctetAsCapability::new(65000)),
        ])],
    );
    wire::encode(&BgpMessage::Open(open)).unwrap()
}

fn check_decode(bytes: &[u8]) {
    if let Err(n) = wire::decode(bytes, &mut ctx()) {
        let code = NotificationCode::of(&n);
        assert!((1..=7).contains(&code.code), "invalid code {code}");
    }
}

fn established_session() -> Session {
    let params = SessionParams {
        local: LocalOpen {
            local_asn: 65010,
            router_id: "10.0.0.2".parse().unwrap(),
            hold_time_secs: 90,
            graceful_restart: None,
        },
        peer_asn: 65000,
        next_hop_v4: Some("10.0.0.2".parse().unwrap()),
        next_hop_v6: None,
    };
    let mut d = DesiredRoutes::new();
    d.insert("192.0.2.10/32".parse().unwrap(), RouteAttributes::default())
        .unwrap();
    let now = Instant::now();
    let (mut s, _) = Session::start(params, Some(Arc::new(d)), now);
    let open = wire::decode(&seed_open(), &mut ctx()).unwrap();
    s.handle(Event::Message(open), now);
    s.handle(Event::Message(BgpMessage::KeepAlive), now);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: testbed::fuzz::cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
        check_decode(&bytes);
    }

    #[test]
    fn random_body_behind_valid_header_never_panics(ty in 1u8..=5, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut m = vec![0xffu8; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(ty);
        m.extend_from_slice(&body);
        check_decode(&m);
    }

    #[test]
    fn mutated_messages_never_panic(
        use_open in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut m = if use_open { seed_open() } else { seed_update() };
        for (pos, val) in flips {
            // Leave the marker alone most of the time so mutations reach the body.
            let idx = 16 + pos % (m.len() - 16);
            m[idx] = val;
        }
        let keep = 19 + cut % (m.len() - 18);
        m.truncate(keep);
        // Keep the header length honest so the body parser sees the damage.
        let len = (m.len() as u16).to_be_bytes();
        m[16] = len[0];
        m[17] = len[1];
        check_decode(&m);
    }

    /// Whatever an established peer sends, the FSM answers with actions and
    /// never panics; an error always ends with a NOTIFICATION then Close.
    #[test]
    fn session_survives_random_frames(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6)) {
        let mut s = established_session();
        let mut c = ctx();
        for body in frames {
            let mut m = seed_update();
            m.truncate(23);
            m.extend_from_slice(&body);
            let len = (m.len() as u16).to_be_bytes();
            m[16] = len[0];
            m[17] = len[1];
            let event = match wire::decode(&m, &mut c) {
                Ok(msg) => Event::Message(msg),
                Err(n) => Event::Malformed(n),
            };
            let actions = s.handle(event, Instant::now());
            if let Some(pos) = actions.iter().position(|a| matches!(a, Action::Close(_))) {
                prop_assert!(pos >= 1 && matches!(actions[pos - 1], Action::Send(BgpMessage::Notification(_))));
                break;
            }
        }
    }
}
