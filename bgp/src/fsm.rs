//! The session state machine of one TCP connection, without I/O.
//!
//! It starts when TCP is up (OpenSent) and ends with a [`SessionEnd`]; the
//! transport (the private `session` module) feeds it events and carries out its
//! actions. Keeping it free of sockets and clocks makes every RFC 4271 rule
//! here testable with plain function calls.
//!
//! Over 500 lines because its unit tests live here (from `mod tests` on,
//! ~240 lines): they drive the machine one event at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;

use crate::negotiation::{self, LocalOpen, Negotiated, FAMILIES};
use crate::rib_out::{end_of_rib, AdjRibOut, PeerEncoding};
use crate::route::DesiredRoutes;
use crate::stats::PeerState;
use crate::wire::NotificationCode;

/// Hold time while waiting for the peer's OPEN (RFC 4271 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// Something that happened to the session.
#[derive(Debug)]
pub enum Event {
    /// A well-formed message arrived.
    Message(BgpMessage),
    /// A malformed message arrived; the NOTIFICATION it calls for.
    Malformed(BgpNotificationMessage),
    /// Time passed; deadlines at or before `now` fire.
    Tick,
    /// The node daemon changed the desired routes.
    DesiredChanged(Arc<DesiredRoutes>),
    /// Administrative stop.
    Stop,
    /// Another connection to the same peer won the collision (RFC 4271 section 6.8).
    CollisionLost,
}

/// What the transport must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this message.
    Send(BgpMessage),
    /// Flush and close the connection; the session is over.
    Close(SessionEnd),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// We sent this NOTIFICATION (an error, a hold-timer expiry, or Cease on stop).
    NotificationSent(NotificationCode),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(NotificationCode),
    /// The connection failed or the peer closed it.
    ConnectionLost(String),
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::NotificationSent(c) => write!(f, "sent NOTIFICATION {c}"),
            SessionEnd::NotificationReceived(c) => write!(f, "received NOTIFICATION {c}"),
            SessionEnd::ConnectionLost(e) => write!(f, "connection lost: {e}"),
        }
    }
}

/// Per-session settings the transport knows once TCP is up.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Our OPEN.
    pub local: LocalOpen,
    /// The ASN the peer must have.
    pub peer_asn: u32,
    /// Next hop for IPv4 routes on this connection.
    pub next_hop_v4: Option<std::net::Ipv4Addr>,
    /// Next hop for IPv6 routes on this connection.
    pub next_hop_v6: Option<std::net::Ipv6Addr>,
}

/// One BGP session from OpenSent to its end.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    state: PeerState,
    negotiated: Option<Negotiated>,
    encoding: Option<PeerEncoding>,
    rib_out: AdjRibOut,
    desired: Arc<DesiredRoutes>,
    /// No table was given yet (a restarting speaker): End-of-RIB waits for
    /// the first one, so graceful-restart helpers keep our stale routes.
    table_pending: bool,
    end_of_rib_sent: bool,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    now: Instant,
    route_refreshes: u64,
    ended: bool,
}

impl Session {
    /// TCP is up: send our OPEN and wait for the peer's. `desired`: the
    /// routes to announce, or `None` while the node daemon has not given any
    /// yet (after a restart), which holds End-of-RIB back until it does.
    pub fn start(
        params: SessionParams,
        desired: Option<Arc<DesiredRoutes>>,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let open = negotiation::build_open(&params.local);
        let session = Session {
            params,
            state: PeerState::OpenSent,
            negotiated: None,
            encoding: None,
            rib_out: AdjRibOut::default(),
            table_pending: desired.is_none(),
            end_of_rib_sent: false,
            desired: desired.unwrap_or_default(),
            hold_deadline: Some(now + OPEN_HOLD_TIME),
            keepalive_deadline: None,
            now,
            route_refreshes: 0,
            ended: false,
        };
        (session, vec![Action::Send(BgpMessage::Open(open))])
    }

    /// Current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// What was negotiated, once the peer's OPEN was accepted.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Prefixes the peer has from us.
    pub fn announced(&self) -> usize {
        self.rib_out.len()
    }

    /// ROUTE-REFRESH requests answered in this session.
    pub fn route_refreshes(&self) -> u64 {
        self.route_refreshes
    }

    /// The earliest time a [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.hold_deadline, self.keepalive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feeds one event at time `now`; returns the actions to carry out in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        if self.ended {
            return vec![];
        }
        self.now = now;
        let mut out = Vec::new();
        match event {
            Event::Message(msg) => self.on_message(msg, &mut out),
            Event::Malformed(notification) => self.fail(notification, &mut out),
            Event::Tick => self.on_tick(&mut out),
            Event::DesiredChanged(desired) => {
                self.desired = desired;
                self.table_pending = false;
                if self.state == PeerState::Established {
                    self.converge(&mut out);
                    self.send_end_of_rib(&mut out);
                }
            }
            Event::Stop => self.fail(
                BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
                    value: Box::new([]),
                }),
                &mut out,
            ),
            Event::CollisionLost => self.fail(
                BgpNotificationMessage::CeaseError(CeaseError::ConnectionCollisionResolution {
                    value: Box::new([]),
                }),
                &mut out,
            ),
        }
        // Any message we send restarts the keepalive timer (RFC 4271 section 4.4).
        if out.iter().any(|a| matches!(a, Action::Send(_))) {
            self.restart_keepalive();
        }
        out
    }

    fn restart_keepalive(&mut self) {
        if let Some(n) = &self.negotiated {
            if n.keepalive_secs() > 0 {
                self.keepalive_deadline =
                    Some(self.now + Duration::from_secs(n.keepalive_secs().into()));
            }
        }
    }

    fn restart_hold(&mut self) {
        self.hold_deadline = match &self.negotiated {
            Some(n) if n.hold_time_secs == 0 => None,
            Some(n) => Some(self.now + Duration::from_secs(n.hold_time_secs.into())),
            None => self.hold_deadline,
        };
    }

    fn fail(&mut self, notification: BgpNotificationMessage, out: &mut Vec<Action>) {
        let code = NotificationCode::of(&notification);
        out.push(Action::Send(BgpMessage::Notification(notification)));
        self.end(SessionEnd::NotificationSent(code), out);
    }

    fn end(&mut self, reason: SessionEnd, out: &mut Vec<Action>) {
        self.ended = true;
        self.state = PeerState::Idle;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        out.push(Action::Close(reason));
    }

    fn unexpected(&mut self, out: &mut Vec<Action>) {
        let value: Box<[u8]> = Box::new([]);
        let err = match self.state {
            PeerState::OpenSent => {
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value }
            }
            PeerState::OpenConfirm => {
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value }
            }
            _ => FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value },
        };
        self.fail(BgpNotificationMessage::FiniteStateMachineError(err), out);
    }

    fn on_message(&mut self, msg: BgpMessage, out: &mut Vec<Action>) {
        if let BgpMessage::Notification(n) = &msg {
            let code = NotificationCode::of(n);
            self.end(SessionEnd::NotificationReceived(code), out);
            return;
        }
        match (self.state, msg) {
            (PeerState::OpenSent, BgpMessage::Open(open)) => {
                match negotiation::negotiate(&self.params.local, self.params.peer_asn, &open) {
                    Ok(n) => {
                        self.encoding = Some(PeerEncoding {
                            local_asn: self.params.local.local_asn,
                            ibgp: self.params.peer_asn == self.params.local.local_asn,
                            asn4: n.asn4,
                            next_hop_v4: self.params.next_hop_v4,
                            next_hop_v6: self.params.next_hop_v6,
                            ipv4_unicast: n.ipv4_unicast,
                            ipv6_unicast: n.ipv6_unicast,
                        });
                        self.negotiated = Some(n);
                        self.state = PeerState::OpenConfirm;
                        self.restart_hold();
                        out.push(Action::Send(BgpMessage::KeepAlive));
                    }
                    Err(notification) => self.fail(notification, out),
                }
            }
            (PeerState::OpenConfirm, BgpMessage::KeepAlive) => {
                self.state = PeerState::Established;
                self.restart_hold();
                self.converge(out);
                self.send_end_of_rib(out);
            }
            (PeerState::Established, BgpMessage::KeepAlive | BgpMessage::Update(_)) => {
                // Announce-only: routes from the peer are validated by the
                // decoder, then ignored.
                self.restart_hold();
            }
            (PeerState::Established, BgpMessage::RouteRefresh(rr)) => {
                self.restart_hold();
                self.on_route_refresh(rr.address_type(), out);
            }
            _ => self.unexpected(out),
        }
    }

    fn on_route_refresh(&mut self, family: AddressType, out: &mut Vec<Action>) {
        let (Some(n), Some(enc)) = (&self.negotiated, &self.encoding) else {
            return;
        };
        // RFC 2918: a refresh for a family we did not negotiate is ignored.
        if !n.family_enabled(family) {
            return;
        }
        self.route_refreshes += 1;
        out.extend(
            self.rib_out
                .resend(family, enc)
                .into_iter()
                .map(|u| Action::Send(BgpMessage::Update(u))),
        );
    }

    fn on_tick(&mut self, out: &mut Vec<Action>) {
        if self.hold_deadline.is_some_and(|d| d <= self.now) {
            let expired = HoldTimerExpiredError::Unspecific {
                sub_code: 0,
                value: Box::new([]),
            };
            self.fail(BgpNotificationMessage::HoldTimerExpiredError(expired), out);
            return;
        }
        if self.keepalive_deadline.is_some_and(|d| d <= self.now) {
            out.push(Action::Send(BgpMessage::KeepAlive));
        }
    }

    /// End-of-RIB tells graceful-restart helpers our initial table is
    /// complete: once per session, and only once a table was given.
    fn send_end_of_rib(&mut self, out: &mut Vec<Action>) {
        if self.table_pending || self.end_of_rib_sent {
            return;
        }
        self.end_of_rib_sent = true;
        for family in FAMILIES {
            if self
                .negotiated
                .as_ref()
                .is_some_and(|n| n.family_enabled(family))
            {
                out.push(Action::Send(BgpMessage::Update(end_of_rib(family))));
            }
        }
    }

    fn converge(&mut self, out: &mut Vec<Action>) {
        let Some(enc) = &self.encoding else { return };
        let updates = self.rib_out.converge(&self.desired, enc);
        out.extend(
            updates
                .into_iter()
                .map(|u| Action::Send(BgpMessage::Update(u))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteAttributes;
    use netgauze_bgp_pkt::capabilities::{
        BgpCapability, FourOctetAsCapability, MultiProtocolExtensionsCapability,
    };
    use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
    use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
    use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
    use std::net::Ipv4Addr;

    fn params() -> SessionParams {
        SessionParams {
            local: LocalOpen {
                local_asn: 65010,
                router_id: Ipv4Addr::new(10, 0, 0, 2),
                hold_time_secs: 9,
                graceful_restart: None,
            },
            peer_asn: 65000,
            next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            next_hop_v6: None,
        }
    }

    fn peer_open(hold: u16) -> BgpMessage {
        BgpMessage::Open(BgpOpenMessage::new(
            65000,
            hold,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![BgpOpenMessageParameter::new_capabilities(vec![
                BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                    AddressType::Ipv4Unicast,
                )),
                BgpCapability::RouteRefresh,
                BgpCapability::FourOctetAs(FourOctetAsCapability::new(65000)),
            ])],
        ))
    }

    fn vip() -> Arc<DesiredRoutes> {
        let mut d = DesiredRoutes::new();
        d.insert("192.0.2.10/32".parse().unwrap(), RouteAttributes::default())
            .unwrap();
        Arc::new(d)
    }

    fn established(t0: Instant) -> Session {
        let (mut s, _) = Session::start(params(), Some(vip()), t0);
        s.handle(Event::Message(peer_open(30)), t0);
        let out = s.handle(Event::Message(BgpMessage::KeepAlive), t0);
        assert_eq!(s.state(), PeerState::Established);
        // One UPDATE for the VIP and one IPv4 End-of-RIB.
        assert_eq!(out.len(), 2);
        s
    }

    fn closed_with(out: &[Action]) -> Option<SessionEnd> {
        out.iter().find_map(|a| match a {
            Action::Close(e) => Some(e.clone()),
            _ => None,
        })
    }

    #[test]
    fn opens_and_announces() {
        let t0 = Instant::now();
        let s = established(t0);
        assert_eq!(s.announced(), 1);
        assert_eq!(s.negotiated().unwrap().hold_time_secs, 9);
    }

    #[test]
    fn keepalives_follow_a_third_of_hold_time_and_hold_timer_expires() {
        let t0 = Instant::now();
        let mut s = established(t0);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(3)));
        let out = s.handle(Event::Tick, t0 + Duration::from_secs(3));
        assert_eq!(out, vec![Action::Send(BgpMessage::KeepAlive)]);
        let out = s.handle(Event::Tick, t0 + Duration::from_secs(9));
        let end = closed_with(&out).expect("hold timer must close the session");
        assert_eq!(
            end,
            SessionEnd::NotificationSent(NotificationCode {
                code: 4,
                subcode: 0
            })
        );
        assert_eq!(s.state(), PeerState::Idle);
    }

    #[test]
    fn received_keepalive_restarts_hold_timer() {
        let t0 = Instant::now();
        let mut s = established(t0);
        s.handle(
            Event::Message(BgpMessage::KeepAlive),
            t0 + Duration::from_secs(8),
        );
        let out = s.handle(Event::Tick, t0 + Duration::from_secs(10));
        assert!(closed_with(&out).is_none());
    }

    #[test]
    fn route_refresh_resends_and_withdraw_works() {
        let t0 = Instant::now();
        let mut s = established(t0);
        let rr = BgpRouteRefreshMessage::new(
            AddressType::Ipv4Unicast,
            RouteRefreshSubcode::NormalRequest,
        );
        let out = s.handle(Event::Message(BgpMessage::RouteRefresh(rr)), t0);
        assert_eq!(out.len(), 1);
        assert_eq!(s.route_refreshes(), 1);
        let out = s.handle(Event::DesiredChanged(Arc::new(DesiredRoutes::new())), t0);
        assert_eq!(out.len(), 1);
        assert_eq!(s.announced(), 0);
    }

    #[test]
    fn desired_routes_set_before_established_go_out_on_establishment() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(params(), Some(Arc::new(DesiredRoutes::new())), t0);
        assert!(
            s.handle(Event::DesiredChanged(vip()), t0).is_empty(),
            "nothing before Established"
        );
        s.handle(Event::Message(peer_open(30)), t0);
        let out = s.handle(Event::Message(BgpMessage::KeepAlive), t0);
        assert_eq!(out.len(), 2, "the VIP and End-of-RIB");
        assert_eq!(s.announced(), 1);
    }

    #[test]
    fn a_restarting_speaker_holds_end_of_rib_until_it_has_a_table() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(params(), None, t0);
        s.handle(Event::Message(peer_open(30)), t0);
        let out = s.handle(Event::Message(BgpMessage::KeepAlive), t0);
        assert_eq!(s.state(), PeerState::Established);
        assert!(out.is_empty(), "no routes and no End-of-RIB yet: {out:?}");
        let out = s.handle(Event::DesiredChanged(vip()), t0);
        assert_eq!(out.len(), 2, "the VIP, then End-of-RIB");
        let out = s.handle(Event::DesiredChanged(Arc::new(DesiredRoutes::new())), t0);
        assert_eq!(
            out.len(),
            1,
            "a withdrawal; End-of-RIB goes once per session"
        );
    }

    #[test]
    fn hold_time_zero_disables_timers() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(params(), Some(vip()), t0);
        s.handle(Event::Message(peer_open(0)), t0);
        s.handle(Event::Message(BgpMessage::KeepAlive), t0);
        assert_eq!(s.state(), PeerState::Established);
        assert_eq!(s.next_deadline(), None);
        assert!(s
            .handle(Event::Tick, t0 + Duration::from_secs(3600))
            .is_empty());
    }

    #[test]
    fn stop_sends_cease_administrative_shutdown() {
        let mut s = established(Instant::now());
        let out = s.handle(Event::Stop, Instant::now());
        assert_eq!(
            closed_with(&out),
            Some(SessionEnd::NotificationSent(NotificationCode {
                code: 6,
                subcode: 2
            }))
        );
    }

    #[test]
    fn unexpected_messages_are_fsm_errors() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(params(), Some(vip()), t0);
        let out = s.handle(Event::Message(BgpMessage::KeepAlive), t0);
        assert_eq!(
            closed_with(&out),
            Some(SessionEnd::NotificationSent(NotificationCode {
                code: 5,
                subcode: 1
            }))
        );
        let mut s = established(t0);
        let out = s.handle(Event::Message(peer_open(30)), t0);
        assert_eq!(
            closed_with(&out),
            Some(SessionEnd::NotificationSent(NotificationCode {
                code: 5,
                subcode: 3
            }))
        );
        assert!(
            s.handle(Event::Tick, t0).is_empty(),
            "an ended session stays silent"
        );
    }

    #[test]
    fn lost_collision_sends_cease_7() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(params(), Some(vip()), t0);
        s.handle(Event::Message(peer_open(30)), t0);
        let out = s.handle(Event::CollisionLost, t0);
        assert_eq!(
            closed_with(&out),
            Some(SessionEnd::NotificationSent(NotificationCode {
                code: 6,
                subcode: 7
            }))
        );
    }

    #[test]
    fn wrong_peer_as_is_rejected() {
        let t0 = Instant::now();
        let (mut s, _) = Session::start(
            SessionParams {
                peer_asn: 65001,
                ..params()
            },
            Some(vip()),
            t0,
        );
        let out = s.handle(Event::Message(peer_open(30)), t0);
        assert_eq!(
            closed_with(&out),
            Some(SessionEnd::NotificationSent(NotificationCode {
                code: 2,
                subcode: 2
            }))
        );
    }
}
