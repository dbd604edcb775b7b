//! A scripted BGP peer over loopback TCP: the test decides every byte it sends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edgelb_bgp::wire::{self, FrameReader, NotificationCode, ReadError};
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct FakePeer {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    ctx: BgpParsingContext,
}

/// A listener on 127.0.0.1:<ephemeral> the speaker connects to.
pub async fn listen(ip: Ipv4Addr) -> (TcpListener, u16) {
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

pub fn open(asn: u32, hold: u16, router_id: Ipv4Addr) -> BgpMessage {
    BgpMessage::Open(BgpOpenMessage::new(
        u16::try_from(asn).unwrap_or(23456),
        hold,
        router_id,
        vec![BgpOpenMessageParameter::new_capabilities(vec![
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv4Unicast,
            )),
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv6Unicast,
            )),
            BgpCapability::RouteRefresh,
            BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)),
        ])],
    ))
}

/// Prefixes announced and withdrawn by one UPDATE, as strings.
pub fn update_prefixes(msg: &BgpMessage) -> (Vec<String>, Vec<String>) {
    let mut announced = Vec::new();
    let mut withdrawn = Vec::new();
    if let BgpMessage::Update(u) = msg {
        announced.extend(u.nlri().iter().map(|n| n.network().address().to_string()));
        withdrawn.extend(
            u.withdraw_routes()
                .iter()
                .map(|n| n.network().address().to_string()),
        );
        for a in u.path_attributes() {
            match a.value() {
                PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) => {
                    announced.extend(nlri.iter().map(|n| n.network().address().to_string()))
                }
                PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                    withdrawn.extend(nlri.iter().map(|n| n.network().address().to_string()))
                }
                _ => {}
            }
        }
    }
    (announced, withdrawn)
}

impl FakePeer {
    pub async fn accept(listener: &TcpListener) -> FakePeer {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("speaker did not connect")
            .expect("accept");
        Self::from_stream(stream)
    }

    /// Connects to a passive speaker from `local`.
    pub async fn connect(local: Ipv4Addr, speaker: SocketAddr) -> FakePeer {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(local), 0))
            .expect("bind");
        let stream = tokio::time::timeout(WAIT, socket.connect(speaker))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> FakePeer {
        let (r, w) = stream.into_split();
        FakePeer {
            reader: FrameReader::new(r),
            writer: w,
            ctx: edgelb_bgp::wire::parsing_context(),
        }
    }

    pub async fn send(&mut self, msg: BgpMessage) {
        self.send_raw(&wire::encode(&msg).expect("encode")).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next message, or `None` on EOF / reset.
    pub async fn recv(&mut self) -> Option<BgpMessage> {
        let frame = tokio::time::timeout(WAIT, self.reader.next_frame())
            .await
            .expect("peer waited too long");
        match frame {
            Ok(Some(bytes)) => {
                Some(wire::decode(&bytes, &mut self.ctx).expect("speaker sent a malformed message"))
            }
            Ok(None) | Err(ReadError::Io(_)) => None,
            Err(ReadError::Malformed(n)) => panic!("speaker sent a malformed header: {n:?}"),
        }
    }

    /// OPEN exchange up to Established.
    pub async fn establish(&mut self, asn: u32, hold: u16, router_id: Ipv4Addr) {
        let Some(BgpMessage::Open(_)) = self.recv().await else {
            panic!("expected OPEN")
        };
        self.send(open(asn, hold, router_id)).await;
        self.send(BgpMessage::KeepAlive).await;
        assert_eq!(self.recv().await, Some(BgpMessage::KeepAlive));
    }

    /// Reads UPDATEs until End-of-RIB has been seen for `families` families;
    /// returns all announced prefixes.
    pub async fn initial_table(&mut self, families: usize) -> Vec<String> {
        let mut seen_eor = 0;
        let mut prefixes = Vec::new();
        while seen_eor < families {
            match self.recv().await {
                Some(BgpMessage::Update(u)) if u.end_of_rib().is_some() => seen_eor += 1,
                Some(m @ BgpMessage::Update(_)) => prefixes.extend(update_prefixes(&m).0),
                Some(BgpMessage::KeepAlive) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        prefixes.sort();
        prefixes
    }

    /// Skips KEEPALIVEs; returns the next other message.
    pub async fn recv_non_keepalive(&mut self) -> Option<BgpMessage> {
        loop {
            match self.recv().await {
                Some(BgpMessage::KeepAlive) => continue,
                other => return other,
            }
        }
    }

    /// Reads until a NOTIFICATION arrives; returns its code.
    pub async fn expect_notification(&mut self) -> NotificationCode {
        loop {
            match self.recv().await {
                Some(BgpMessage::Notification(n)) => return NotificationCode::of(&n),
                Some(_) => continue,
                None => panic!("connection closed without NOTIFICATION"),
            }
        }
    }
}
