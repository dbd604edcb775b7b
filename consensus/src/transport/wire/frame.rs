//! Length-prefixed frames: a 4-byte big-endian body length, then the body.
//!
//! The length is checked against the configured maximum before anything is
//! allocated, so a corrupt or hostile prefix costs at most a closed
//! connection; and the body buffer grows with the bytes that actually
//! arrive, so a peer announcing a maximal frame and then stalling holds at
//! most [`INITIAL_BODY_CAPACITY`], not the whole announced length.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// What a frame body buffer starts at before the body arrives: enough for
/// every ordinary message in one allocation, small enough that an announced
/// but unsent frame costs little.
pub const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed mid-frame.
    #[error("frame i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a body larger than allowed.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A zero-length body (never valid: every message has content).
    #[error("empty frame")]
    Empty,
}

/// Reads one frame body of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    reader.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Writes one frame whose body is the concatenation of `parts`.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[&[u8]],
    max: usize,
) -> Result<(), FrameError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max || u32::try_from(len).is_err() {
        return Err(FrameError::TooLarge { len, max });
    }
    // One buffer, one write: avoids a small-packet round trip per part.
    let mut buf = Vec::with_capacity(LENGTH_PREFIX + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    for p in parts {
        buf.extend_from_slice(p);
    }
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_golden_layout() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[b"ab", b"c"], 16).await.unwrap();
        assert_eq!(buf, [0, 0, 0, 3, b'a', b'b', b'c']);
        let body = read_frame(&mut buf.as_slice(), 16).await.unwrap();
        assert_eq!(body, b"abc");
    }

    #[tokio::test]
    async fn oversized_truncated_and_empty_frames_are_errors() {
        let big = [0u8, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut big.as_slice(), 255).await,
            Err(FrameError::TooLarge { len: 256, max: 255 })
        ));
        let truncated = [0u8, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut truncated.as_slice(), 255).await,
            Err(FrameError::Io(_))
        ));
        let short_prefix = [0u8, 0];
        assert!(matches!(
            read_frame(&mut short_prefix.as_slice(), 255).await,
            Err(FrameError::Io(_))
        ));
        let empty = [0u8; 4];
        assert!(matches!(
            read_frame(&mut empty.as_slice(), 255).await,
            Err(FrameError::Empty)
        ));
        let mut out = Vec::new();
        assert!(matches!(
            write_frame(&mut out, &[&[0u8; 17]], 16).await,
            Err(FrameError::TooLarge { .. })
        ));
    }
}
