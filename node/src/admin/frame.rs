//! Framing: a 4-byte big-endian length, then that many bytes of JSON.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts (a full table listing fits easily).
pub const MAX_FRAME: u32 = 8 << 20;

/// Errors reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than the limit ([`MAX_FRAME`], or
    /// [`MAX_HELLO_FRAME`] before authentication).
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(u32),
    /// The frame is not valid JSON for the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes `message` as one frame.
pub async fn write_frame<W, T>(w: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// What a frame buffer starts at before its body arrives (it grows with
/// the bytes received, up to the announced length).
pub const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Largest frame accepted before a client has authenticated: a hello is a
/// token, so a stranger cannot make the server buffer megabytes.
pub const MAX_HELLO_FRAME: u32 = 4096;

/// Reads one frame and decodes it.
pub async fn read_frame<R, T>(r: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame_within(r, MAX_FRAME).await
}

/// Reads one frame of at most `max` bytes and decodes it.
pub async fn read_frame_within<R, T>(r: &mut R, max: u32) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    // The buffer grows with the bytes that arrive, so announcing a large
    // frame and then stalling holds little memory.
    let len = len as usize;
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(serde_json::from_slice(&body)?)
}
