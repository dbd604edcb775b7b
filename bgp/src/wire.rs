//! Bytes on the TCP stream: framing, decoding with RFC 4271 error codes, encoding.
//!
//! netgauze-bgp-pkt does the message codec; this module checks the header
//! first (so a bad length never makes us buffer or parse garbage), rejects
//! what netgauze accepts but RFC 4271 forbids (unrecognized well-known
//! attributes), and names every failure by the NOTIFICATION it deserves.

use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, MessageHeaderError, RouteRefreshError, UpdateMessageError,
};
use netgauze_bgp_pkt::path_attribute::PathAttributeValue;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use netgauze_parse_utils::WritablePdu;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271).
pub const MAX_MESSAGE_LEN: usize = 4096;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

/// Encoding failed; only possible for a message we built wrong.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode BGP message: {0}")]
pub struct EncodeError(String);

/// Serializes one message.
pub fn encode(msg: &BgpMessage) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(msg.len());
    msg.write(&mut out)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out)
}

/// Code and subcode of a NOTIFICATION, with a readable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationCode {
    /// Error code (RFC 4271 section 4.5).
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
}

impl NotificationCode {
    /// Code and subcode of a netgauze notification (read back from its encoding,
    /// which netgauze fixes by the variant).
    pub fn of(msg: &BgpNotificationMessage) -> Self {
        match encode(&BgpMessage::Notification(msg.clone())) {
            Ok(bytes) if bytes.len() >= HEADER_LEN + 2 => NotificationCode {
                code: bytes[HEADER_LEN],
                subcode: bytes[HEADER_LEN + 1],
            },
            _ => NotificationCode {
                code: 0,
                subcode: 0,
            },
        }
    }

    /// Name of the error code.
    pub fn name(&self) -> &'static str {
        match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "Unknown",
        }
    }
}

impl std::fmt::Display for NotificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.code, self.subcode, self.name())
    }
}

/// Checks a message header and returns the message length, or the
/// NOTIFICATION a malformed header calls for (RFC 4271 section 6.1).
pub fn check_header(header: &[u8; HEADER_LEN]) -> Result<usize, BgpNotificationMessage> {
    if header[..16].iter().any(|b| *b != 0xff) {
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::ConnectionNotSynchronized {
                value: Box::new([]),
            },
        ));
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let bad_length = || {
        BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
            value: length.to_be_bytes().into(),
        })
    };
    let len = length as usize;
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_length());
    }
    let length_ok = match header[18] {
        TYPE_OPEN => len >= 29,
        TYPE_UPDATE => len >= 23,
        TYPE_NOTIFICATION => len >= 21,
        TYPE_KEEPALIVE => len == 19,
        // A wrong ROUTE-REFRESH length is its own error (7/1), checked in decode().
        TYPE_ROUTE_REFRESH => true,
        other => {
            return Err(BgpNotificationMessage::MessageHeaderError(
                MessageHeaderError::BadMessageType {
                    value: Box::new([other]),
                },
            ));
        }
    };
    if !length_ok {
        return Err(bad_length());
    }
    Ok(len)
}

/// The decoder settings every session uses: 4-byte ASNs, multiprotocol
/// IPv4/IPv6, and strict checks (a malformed attribute ends the session with
/// its NOTIFICATION rather than being skipped).
pub fn parsing_context() -> BgpParsingContext {
    BgpParsingContext::new(
        true,
        Default::default(),
        Default::default(),
        true,
        true,
        true,
        true,
    )
}

/// Decodes one complete message (header included), or returns the
/// NOTIFICATION that must end the session.
pub fn decode(
    frame: &[u8],
    ctx: &mut BgpParsingContext,
) -> Result<BgpMessage, BgpNotificationMessage> {
    let header: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
            BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
                value: (frame.len() as u16).to_be_bytes().into(),
            })
        })?;
    let len = check_header(header)?;
    if frame.len() != len {
        return Err(BgpNotificationMessage::MessageHeaderError(
            MessageHeaderError::BadMessageLength {
                value: (len as u16).to_be_bytes().into(),
            },
        ));
    }
    if header[18] == TYPE_ROUTE_REFRESH && len != 23 {
        // RFC 7313 section 5: the data is the whole offending message.
        return Err(BgpNotificationMessage::RouteRefreshError(
            RouteRefreshError::InvalidMessageLength {
                value: frame.into(),
            },
        ));
    }
    let mut reader = SliceReader::new(frame);
    let msg = BgpMessage::parse(&mut reader, ctx).map_err(BgpNotificationMessage::from)?;
    // Errors netgauze chose to tolerate are still errors for a session we keep.
    let ignored = ctx.reset_parsing_errors();
    if !ignored.path_attr_errors().is_empty() {
        return Err(BgpNotificationMessage::UpdateMessageError(
            UpdateMessageError::MalformedAttributeList {
                value: Box::new([]),
            },
        ));
    }
    if let BgpMessage::Update(update) = &msg {
        check_update(update)?;
    }
    Ok(msg)
}

/// RFC 4271 section 6.3 checks netgauze leaves to the session.
fn check_update(update: &BgpUpdateMessage) -> Result<(), BgpNotificationMessage> {
    let mut has_origin = false;
    let mut has_as_path = false;
    let mut has_next_hop = false;
    for attr in update.path_attributes() {
        match attr.value() {
            // A well-known attribute we do not know is fatal; unknown optional ones are fine.
            PathAttributeValue::UnknownAttribute(unknown) if !attr.optional() => {
                let mut data = vec![0x40, unknown.code()];
                data.push(unknown.value().len().min(255) as u8);
                data.extend_from_slice(&unknown.value()[..unknown.value().len().min(255)]);
                return Err(BgpNotificationMessage::UpdateMessageError(
                    UpdateMessageError::UnrecognizedWellKnownAttribute { value: data.into() },
                ));
            }
            PathAttributeValue::Origin(_) => has_origin = true,
            PathAttributeValue::AsPath(_) => has_as_path = true,
            PathAttributeValue::NextHop(_) => has_next_hop = true,
            _ => {}
        }
    }
    let missing = |type_code: u8| {
        Err(BgpNotificationMessage::UpdateMessageError(
            UpdateMessageError::MissingWellKnownAttribute {
                value: Box::new([type_code]),
            },
        ))
    };
    let has_mp_reach = update
        .path_attributes()
        .iter()
        .any(|a| matches!(a.value(), PathAttributeValue::MpReach(_)));
    if !update.nlri().is_empty() || has_mp_reach {
        if !has_origin {
            return missing(1);
        }
        if !has_as_path {
            return missing(2);
        }
    }
    if !update.nlri().is_empty() && !has_next_hop {
        return missing(3);
    }
    Ok(())
}

/// Why reading the next message failed.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed.
    Io(std::io::Error),
    /// The header was malformed; the session must send this NOTIFICATION.
    Malformed(BgpNotificationMessage),
}

/// Splits a byte stream into BGP messages.
///
/// [`FrameReader::next_frame`] is cancel-safe: bytes read before a
/// cancellation stay buffered for the next call.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: Vec::with_capacity(2 * MAX_MESSAGE_LEN),
        }
    }

    /// The next complete message, or `None` when the peer closed the stream.
    pub async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; MAX_MESSAGE_LEN];
            let n = self.inner.read(&mut chunk).await.map_err(ReadError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header: &[u8; HEADER_LEN] = header
            .try_into()
            .map_err(|_| ReadError::Io(std::io::Error::other("short header")))?;
        let len = check_header(header).map_err(ReadError::Malformed)?;
        if self.buf.len() < len {
            return Ok(None);
        }
        Ok(Some(self.buf.drain(..len).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u16, ty: u8) -> Vec<u8> {
        let mut h = vec![0xff; 16];
        h.extend_from_slice(&len.to_be_bytes());
        h.push(ty);
        h
    }

    fn ctx() -> BgpParsingContext {
        parsing_context()
    }

    fn code_of(r: Result<BgpMessage, BgpNotificationMessage>) -> (u8, u8) {
        let n = r.expect_err("must be rejected");
        let c = NotificationCode::of(&n);
        (c.code, c.subcode)
    }

    #[test]
    fn keepalive_round_trips() {
        let bytes = encode(&BgpMessage::KeepAlive).unwrap();
        assert_eq!(bytes, header(19, 4));
        assert_eq!(decode(&bytes, &mut ctx()), Ok(BgpMessage::KeepAlive));
    }

    #[test]
    fn header_errors_get_rfc4271_codes() {
        let mut bad_marker = header(19, 4);
        bad_marker[3] = 0;
        assert_eq!(code_of(decode(&bad_marker, &mut ctx())), (1, 1));
        assert_eq!(code_of(decode(&header(18, 4), &mut ctx())), (1, 2));
        assert_eq!(code_of(decode(&header(5000, 2), &mut ctx())), (1, 2));
        let mut long_keepalive = header(20, 4);
        long_keepalive.push(0);
        assert_eq!(code_of(decode(&long_keepalive, &mut ctx())), (1, 2));
        assert_eq!(code_of(decode(&header(19, 9), &mut ctx())), (1, 3));
    }

    #[test]
    fn route_refresh_with_bad_length_is_route_refresh_error() {
        let mut rr = header(24, 5);
        rr.extend_from_slice(&[0, 1, 0, 1, 0]);
        assert_eq!(code_of(decode(&rr, &mut ctx())), (7, 1));
        let mut ok = header(23, 5);
        ok.extend_from_slice(&[0, 1, 0, 1]);
        assert!(matches!(
            decode(&ok, &mut ctx()),
            Ok(BgpMessage::RouteRefresh(_))
        ));
    }

    #[test]
    fn open_errors_get_rfc4271_codes() {
        use netgauze_bgp_pkt::open::BgpOpenMessage;
        let open = BgpMessage::Open(BgpOpenMessage::new(
            65000,
            90,
            "10.0.0.1".parse().unwrap(),
            vec![],
        ));
        let good = encode(&open).unwrap();
        assert!(decode(&good, &mut ctx()).is_ok());
        let mut version3 = good.clone();
        version3[HEADER_LEN] = 3;
        assert_eq!(code_of(decode(&version3, &mut ctx())), (2, 1));
        // One optional parameter of unknown type 7 (only capabilities, type 2, exist).
        let mut odd_param = good[..HEADER_LEN + 9].to_vec();
        odd_param.extend_from_slice(&[3, 7, 1, 0]);
        let len = (odd_param.len() as u16).to_be_bytes();
        odd_param[16..18].copy_from_slice(&len);
        assert_eq!(code_of(decode(&odd_param, &mut ctx())), (2, 4));
    }

    #[test]
    fn unknown_well_known_attribute_is_update_error_2() {
        // UPDATE: no withdrawn, attributes = one well-known (flags 0x40) type 99, len 1.
        let attrs = [0x40u8, 99, 1, 0];
        let mut msg = header((HEADER_LEN + 2 + 2 + attrs.len()) as u16, 2);
        msg.extend_from_slice(&[0, 0]);
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&attrs);
        assert_eq!(code_of(decode(&msg, &mut ctx())), (3, 2));
    }

    #[test]
    fn unknown_optional_attribute_is_accepted() {
        let attrs = [0xc0u8, 99, 1, 0];
        let mut msg = header((HEADER_LEN + 2 + 2 + attrs.len()) as u16, 2);
        msg.extend_from_slice(&[0, 0]);
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&attrs);
        assert!(decode(&msg, &mut ctx()).is_ok());
    }

    #[test]
    fn nlri_without_attributes_is_missing_well_known() {
        // UPDATE announcing 10.0.0.0/8 with no attributes at all.
        let mut msg = header((HEADER_LEN + 4 + 2) as u16, 2);
        msg.extend_from_slice(&[0, 0, 0, 0, 8, 10]);
        assert_eq!(code_of(decode(&msg, &mut ctx())), (3, 3));
    }

    #[tokio::test]
    async fn frame_reader_splits_and_flags_bad_headers() {
        let mut stream = encode(&BgpMessage::KeepAlive).unwrap();
        stream.extend(encode(&BgpMessage::KeepAlive).unwrap());
        stream.extend(header(3, 4));
        let mut reader = FrameReader::new(&stream[..]);
        assert_eq!(reader.next_frame().await.unwrap().unwrap().len(), 19);
        assert_eq!(reader.next_frame().await.unwrap().unwrap().len(), 19);
        match reader.next_frame().await {
            Err(ReadError::Malformed(n)) => assert_eq!(NotificationCode::of(&n).code, 1),
            other => panic!("expected a header error, got {other:?}"),
        }
    }
}
