//! The one byte encoding used on disk and on the wire: bincode 2 (serde),
//! standard configuration (little endian, varint integers), with a decode
//! limit so a hostile length prefix inside a message cannot make us allocate
//! more than a frame could ever hold.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Upper bound on what one decode may allocate (and on any frame size).
pub const MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    /// Serialization failed.
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid encoding.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// A valid value was followed by unexpected bytes.
    #[error("decode: {0} trailing bytes")]
    TrailingBytes(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Encodes `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodingError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes exactly one `T` from all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EncodingError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(EncodingError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}
