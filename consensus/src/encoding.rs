//! The one byte encoding used on disk and on the wire: bincode 2 (serde),
//! standard configuration (little endian, varint integers), with a decode
//! limit so a hostile length prefix inside a message cannot make us allocate
//! more than a frame could ever hold.
//!
//! The limit is also scaled to the input: bincode allocates a string or byte
//! buffer of the claimed length *before* reading it, so under one fixed 64
//! MiB limit an 8-byte message claiming a 60 MiB string made us allocate 60
//! MiB. bincode counts against the limit each value's size in memory as it
//! decodes it (a string's length, 8 bytes for a `u64` read from a 1-byte
//! varint, 16 for a `u128`), so a valid encoding of `n` bytes never counts
//! more than [`CLAIM_PER_INPUT_BYTE`] `* n`: decoding under the smallest of
//! [`DECODE_TIERS`] at or above that accepts every valid input and caps what
//! garbage can make us allocate at 128 times its size (at least 4 KiB).

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

/// The most bincode counts against the limit per input byte: 16, for a
/// `u128` decoded from a 1-byte varint (through serde nothing is counted
/// back, so counts only add up).
pub const CLAIM_PER_INPUT_BYTE: usize = 16;

/// The decode limits tried, smallest first: each is 8 times the previous
/// (few monomorphized decoders), the last is [`MAX_DECODE_BYTES`].
pub const DECODE_TIERS: [usize; 6] = [
    4 << 10,
    32 << 10,
    256 << 10,
    2 << 20,
    16 << 20,
    MAX_DECODE_BYTES,
];

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
}

/// Encodes `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodingError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Decodes exactly one `T` from all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EncodingError> {
    let (value, used) = match bytes.len().saturating_mul(CLAIM_PER_INPUT_BYTE) {
        n if n <= DECODE_TIERS[0] => decode_within::<T, { DECODE_TIERS[0] }>(bytes),
        n if n <= DECODE_TIERS[1] => decode_within::<T, { DECODE_TIERS[1] }>(bytes),
        n if n <= DECODE_TIERS[2] => decode_within::<T, { DECODE_TIERS[2] }>(bytes),
        n if n <= DECODE_TIERS[3] => decode_within::<T, { DECODE_TIERS[3] }>(bytes),
        n if n <= DECODE_TIERS[4] => decode_within::<T, { DECODE_TIERS[4] }>(bytes),
        _ => decode_within::<T, MAX_DECODE_BYTES>(bytes),
    }?;
    if used != bytes.len() {
        return Err(EncodingError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Decodes one `T` from the start of `bytes`, ignoring what follows: for
/// reading a version field before choosing the layout of the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EncodingError> {
    let head = &bytes[..bytes.len().min(DECODE_TIERS[0] / CLAIM_PER_INPUT_BYTE)];
    Ok(decode_within::<T, { DECODE_TIERS[0] }>(head)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers count 8 or 16 bytes each against the limit from one
    /// input byte: a valid message made of them must still decode under the
    /// limit scaled to its length (this failed with a limit of 1× length).
    #[test]
    fn many_small_integers_decode_under_the_scaled_limit() {
        for n in [10usize, 1_000, 5_000, 300_000] {
            let longs: Vec<u64> = (0..n as u64).map(|i| i % 200).collect();
            assert_eq!(decode::<Vec<u64>>(&encode(&longs).unwrap()).unwrap(), longs);
            let wide: Vec<u128> = (0..n as u128).map(|i| i % 200).collect();
            assert_eq!(decode::<Vec<u128>>(&encode(&wide).unwrap()).unwrap(), wide);
        }
    }

    /// A valid long string decodes at every tier's edge.
    #[test]
    fn strings_decode_at_every_tier() {
        for tier in DECODE_TIERS[..5].iter() {
            for len in [
                tier / CLAIM_PER_INPUT_BYTE - 8,
                tier / CLAIM_PER_INPUT_BYTE + 8,
            ] {
                let s = "x".repeat(len);
                assert_eq!(decode::<String>(&encode(&s).unwrap()).unwrap(), s);
            }
        }
    }
}
