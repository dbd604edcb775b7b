//! Property tests over random and mutated bytes on the admin protocol's
//! decoders: frames (length prefix, with the hello's smaller limit) and the
//! JSON hello, requests and responses. Decoding never panics, a rejection is
//! an error value, a value that decodes survives a round trip, and no single
//! allocation exceeds what the input justifies. Bounded by the case count:
//! PROPTEST_CASES, default 2048 in the plain test run; CI's scripts/test.sh
//! runs it again with a million cases per property. The live server's side
//! (garbage answered or dropped, the next request served) is in
//! `admin_api.rs`.

use std::sync::OnceLock;

use edgelb_consensus::{
    Backend, BackendState, ClusterSettings, Encapsulation, Protocol, VipFlags, VipKey,
};
use edgelb_node::admin::{
    frame::{read_frame_within, FrameError, INITIAL_BODY_CAPACITY, MAX_HELLO_FRAME},
    protocol::{Hello, Request, Response},
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use testbed::alloc::{largest_allocation, LargestAllocation};

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The largest single allocation decoding `n` bytes of JSON may make:
/// serde_json buffers strings it unescapes and grows vectors element by
/// element, so a small multiple of the input, with a floor for the first
/// buffers.
fn alloc_cap(n: usize) -> usize {
    4096.max(8 * n)
}

fn vip() -> VipKey {
    VipKey {
        address: "192.0.2.1".parse().unwrap(),
        port: 443,
        protocol: Protocol::Tcp,
    }
}

/// Valid frames' bodies of every shape, as the client writes them: the seeds
/// the mutation property damages.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let requests = [
            Request::Status,
            Request::VipAdd {
                key: vip(),
                flags: VipFlags {
                    hash_without_source_port: true,
                    hash_dst_port_only: false,
                },
                encapsulation: Encapsulation::Gue { port: 6080 },
            },
            Request::VipRemove { key: vip() },
            Request::BackendAdd {
                vip: vip(),
                backend: Backend {
                    address: "2001:db8::7".parse().unwrap(),
                    weight: 40,
                    state: BackendState::Active,
                },
            },
            Request::BackendSetState {
                vip: vip(),
                address: "10.0.0.9".parse().unwrap(),
                state: BackendState::Draining,
            },
            Request::SettingsSet {
                settings: ClusterSettings::default(),
            },
            Request::NodeAdd {
                id: 4,
                addr: "10.0.0.4:7000".into(),
                voter: true,
            },
            Request::Lookup {
                src: "198.51.100.7".parse().unwrap(),
                sport: 40000,
                dst: "192.0.2.1".parse().unwrap(),
                dport: 443,
                protocol: Protocol::Udp,
            },
        ];
        let mut out: Vec<Vec<u8>> = requests
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap())
            .collect();
        out.push(
            serde_json::to_vec(&Hello {
                token: "admin-token-for-tests-0123456789".into(),
            })
            .unwrap(),
        );
        out.push(
            serde_json::to_vec(&Response::Error {
                message: "malformed request: \"quoted\" \\ \u{e9}".into(),
            })
            .unwrap(),
        );
        out
    })
}

/// Decodes `bytes` as `T`: no panic, bounded allocation, and a decoded
/// value re-encodes to JSON that decodes to the same value.
fn check<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let (decoded, largest) = largest_allocation(|| serde_json::from_slice::<T>(bytes));
    prop_assert!(
        largest <= alloc_cap(bytes.len()),
        "decoding {} bytes allocated {} bytes at once",
        bytes.len(),
        largest
    );
    if let Ok(value) = decoded {
        let again: T = serde_json::from_slice(&serde_json::to_vec(&value).unwrap()).unwrap();
        prop_assert_eq!(again, value);
    }
    Ok(())
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check::<Request>(bytes)?;
    check::<Response>(bytes)?;
    // Hello has no PartialEq: decode only.
    let (_, largest) = largest_allocation(|| serde_json::from_slice::<Hello>(bytes));
    prop_assert!(largest <= alloc_cap(bytes.len()));
    Ok(())
}

/// Random bytes made mostly into the characters JSON is made of (cheaper
/// to draw than a strategy per byte): an even byte picks from the
/// alphabet, an odd one stays itself, so the parser gets past its first
/// byte far more often than with raw bytes alone.
fn json_noise(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"{}[]:,\"\\ 0123456789.eE+-tfnulrs";
    bytes
        .iter()
        .map(|&b| {
            if b.is_multiple_of(2) {
                ALPHABET[usize::from(b / 2) % ALPHABET.len()]
            } else {
                b
            }
        })
        .collect()
}

fn mutate(seed: &[u8], edits: &[(usize, u8, u8)], cut: usize) -> Vec<u8> {
    let mut m = seed.to_vec();
    for &(pos, val, kind) in edits {
        let i = pos % (m.len() + 1);
        match kind % 3 {
            0 if i < m.len() => m[i] = val,
            1 if i < m.len() => {
                m.remove(i);
            }
            _ => m.insert(i, val),
        }
    }
    // Three times in four, cut the body short somewhere.
    if !cut.is_multiple_of(4) {
        m.truncate(cut % (m.len() + 1));
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: testbed::fuzz::cases(), ..ProptestConfig::default() })]

    /// Random bytes, and JSON-shaped noise, as a hello, a request, a response.
    #[test]
    fn random_bodies_decode_or_fail_cleanly(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        as_noise in any::<bool>(),
    ) {
        if as_noise {
            check_all(&json_noise(&bytes))?;
        } else {
            check_all(&bytes)?;
        }
    }

    /// Valid bodies of every shape, damaged: overwritten, removed and
    /// inserted bytes, truncation.
    #[test]
    fn mutated_bodies_decode_or_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let seed: &Vec<u8> = pick.get::<Vec<u8>>(seeds());
        let m = mutate(seed, &edits, cut);
        check_all(&m)?;
    }

    /// Any byte stream read as frames under the hello's limit: a decoded
    /// hello, or an error; the buffer follows the bytes that arrived.
    #[test]
    fn random_streams_frame_or_fail_cleanly(
        stream in proptest::collection::vec(any::<u8>(), 0..600),
        small_prefix in any::<bool>(),
    ) {
        let mut stream = stream;
        if small_prefix && stream.len() >= 4 {
            stream[0] = 0;
            stream[1] = 0;
            stream[2] %= 2;
        }
        let mut reader = stream.as_slice();
        let (r, largest) = largest_allocation(|| {
            testbed::fuzz::runtime().block_on(read_frame_within::<_, Hello>(&mut reader, MAX_HELLO_FRAME))
        });
        prop_assert!(largest <= alloc_cap(stream.len()), "{}", largest);
        match r {
            Ok(_) => prop_assert!(stream.len() >= 4),
            Err(FrameError::TooLarge(len)) => prop_assert!(len > MAX_HELLO_FRAME),
            Err(FrameError::Io(_) | FrameError::Malformed(_)) => {}
        }
    }
}

/// A frame announcing the post-authentication maximum and then stalling
/// holds only the initial body capacity, not the announced 8 MiB.
#[test]
fn fixture_announced_but_unsent_frame_allocates_little() {
    let mut stream = edgelb_node::admin::frame::MAX_FRAME.to_be_bytes().to_vec();
    stream.extend_from_slice(b"{\"op\"");
    let (r, largest) = largest_allocation(|| {
        testbed::fuzz::runtime().block_on(edgelb_node::admin::frame::read_frame::<_, Request>(
            &mut stream.as_slice(),
        ))
    });
    assert!(matches!(r, Err(FrameError::Io(_))), "{r:?}");
    assert!(largest <= INITIAL_BODY_CAPACITY, "{largest}");
}

/// The seeds decode (the mutation property starts from valid bodies).
#[test]
fn seeds_are_valid_bodies() {
    let seeds = seeds();
    for s in &seeds[..seeds.len() - 2] {
        serde_json::from_slice::<Request>(s).unwrap();
    }
    serde_json::from_slice::<Hello>(&seeds[seeds.len() - 2]).unwrap();
    serde_json::from_slice::<Response>(&seeds[seeds.len() - 1]).unwrap();
}
