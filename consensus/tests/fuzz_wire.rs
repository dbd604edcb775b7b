//! Property tests over random and mutated bytes on the Raft transport's
//! decoders: frames (length prefix), the handshake's first message, and the
//! request and response messages. Decoding never panics, every rejection is
//! an error value, and no single allocation exceeds what the input can
//! justify (see [`alloc_cap`]). Bounded by the case count: PROPTEST_CASES,
//! default 2048 in the plain test run; CI's scripts/test.sh runs it again
//! with a million cases per property. The live server's side (a garbage peer
//! is dropped and counted, nothing changes) is in `transport.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use common::{add_backend, add_vip, HandshakeHello};
use edgelb_consensus::encoding::{decode, encode, EncodingError};
use edgelb_consensus::raft_types::{Entry, TypeConfig};
use edgelb_consensus::wire::channel::{announced_node_id, MAGIC, PROTOCOL_VERSION};
use edgelb_consensus::wire::frame::{read_frame, FrameError, LENGTH_PREFIX};
use edgelb_consensus::wire::message::{
    ForwardError, MembershipChange, RemoteFailure, Request, Response, WriteReceipt,
};
use edgelb_consensus::{ClusterState, CommandError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, Vote};
use proptest::prelude::*;
use serde::Serialize;
use testbed::alloc::{largest_allocation, LargestAllocation};

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// serde's own cap on what a sequence preallocates from a length it has not
/// checked (`serde::de::size_hint::cautious`): 1 MiB, whatever the claim.
const SERDE_PREALLOC: usize = 1 << 20;

/// The largest single allocation decoding `n` bytes may make: serde's
/// preallocation cap, or 128 times the input (the encoding's decode
/// tiers: 8 times the most bincode counts per input byte).
fn alloc_cap(n: usize) -> usize {
    SERDE_PREALLOC.max(128 * n)
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("10.0.0.{id}:7000"))))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// Valid requests of every kind, as our own encoder writes them: the seeds
/// the mutation properties damage.
fn seed_requests() -> Vec<Vec<u8>> {
    let entries: Vec<Entry> = vec![
        Entry {
            log_id: log_id(2, 5),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(2, 6),
            payload: EntryPayload::Normal(add_vip()),
        },
        Entry {
            log_id: log_id(2, 7),
            payload: EntryPayload::Normal(add_backend(3)),
        },
        Entry {
            log_id: log_id(2, 8),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 4)),
        entries,
        leader_commit: Some(log_id(2, 4)),
    };
    let snapshot: InstallSnapshotRequest<TypeConfig> = InstallSnapshotRequest {
        vote: Vote::new_committed(2, 1),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(log_id(2, 8)),
            last_membership: openraft::StoredMembership::new(Some(log_id(2, 8)), membership()),
            snapshot_id: "2-1-8-1".into(),
        },
        offset: 0,
        data: encode(&ClusterState::default()).unwrap(),
        done: true,
    };
    let requests = [
        Request::AppendEntries(append),
        Request::Vote(VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 8)))),
        Request::InstallSnapshot(snapshot),
        Request::Write(add_backend(7)),
        Request::ReadIndex,
        Request::ChangeMembership(MembershipChange::AddLearner {
            id: 4,
            addr: "10.0.0.4:7000".into(),
        }),
        Request::ReadState,
    ];
    requests.iter().map(|r| encode(r).unwrap()).collect()
}

fn seed_responses() -> Vec<Vec<u8>> {
    let mut state = ClusterState::default();
    state.apply(&add_vip()).unwrap();
    state.apply(&add_backend(1)).unwrap();
    let responses = [
        Response::AppendEntries(Ok(AppendEntriesResponse::Success)),
        Response::AppendEntries(Err(RemoteFailure::Stopped("shutting down".into()))),
        Response::Vote(Ok(VoteResponse {
            vote: Vote::new(3, 2),
            vote_granted: true,
            last_log_id: Some(log_id(2, 8)),
        })),
        Response::Write(Ok(WriteReceipt {
            version: 9,
            log_index: 12,
        })),
        Response::Write(Err(ForwardError::Rejected(CommandError::UnknownVip(
            common::vip(),
        )))),
        Response::ReadIndex(Err(ForwardError::NotLeader {
            leader: Some((2, "10.0.0.2:7000".into())),
        })),
        Response::ChangeMembership(Ok(14)),
        Response::ReadState(Ok(Box::new(state))),
    ];
    responses.iter().map(|r| encode(r).unwrap()).collect()
}

/// Encoded requests, then encoded responses.
type Seeds = (Vec<Vec<u8>>, Vec<Vec<u8>>);

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| (seed_requests(), seed_responses()))
}

fn seed_hello() -> Vec<u8> {
    encode(&HandshakeHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        node_id: 2,
        nonce: [7; 32],
    })
    .unwrap()
}

/// Decodes `bytes` as `T`: never a panic; an allocation within [`alloc_cap`];
/// and a value that decodes is canonical (re-encoding it and decoding that
/// gives the same bytes again), so every node reads a message alike.
fn check<T: serde::de::DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, largest) = largest_allocation(|| decode::<T>(bytes));
    prop_assert!(
        largest <= alloc_cap(bytes.len()),
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    if let Ok(value) = decoded {
        let again = encode(&value).unwrap();
        let twice = encode(&decode::<T>(&again).unwrap()).unwrap();
        prop_assert_eq!(again, twice);
    }
    Ok(())
}

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    check::<Request>(bytes)?;
    check::<Response>(bytes)?;
    let (_, largest) = largest_allocation(|| announced_node_id(bytes));
    prop_assert!(largest <= alloc_cap(bytes.len()));
    Ok(())
}

/// Applies byte overwrites, insertions and a cut to `seed`.
fn mutate(seed: &[u8], edits: &[(usize, u8, u8)], cut: usize) -> Vec<u8> {
    let mut m = seed.to_vec();
    for &(pos, val, kind) in edits {
        let i = pos % (m.len() + 1);
        match kind % 4 {
            0 | 1 if i < m.len() => m[i] = val,
            2 => m.insert(i, val),
            // A varint marker for a large length or index (bincode's 251..=255).
            _ if i < m.len() => m[i] = 0xfb + val % 5,
            _ => m.push(val),
        }
    }
    // Three times in four, cut the message short somewhere.
    if !cut.is_multiple_of(4) {
        m.truncate(cut % (m.len() + 1));
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: testbed::fuzz::cases(), ..ProptestConfig::default() })]

    /// Random bytes as a request, a response, and a handshake hello.
    #[test]
    fn random_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_all(&bytes)?;
    }

    /// Valid messages of every kind, damaged: overwritten bytes, inserted
    /// bytes, large varint markers, truncation.
    #[test]
    fn mutated_messages_decode_or_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let (requests, responses) = seeds();
        let all: Vec<&Vec<u8>> = requests.iter().chain(responses).collect();
        let seed: &Vec<u8> = pick.get::<&Vec<u8>>(&all);
        let m = mutate(seed, &edits, cut);
        check_all(&m)?;
    }

    /// A damaged handshake hello: an error or the announced id, never a panic.
    #[test]
    fn mutated_hellos_decode_or_fail_cleanly(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let m = mutate(&seed_hello(), &edits, cut);
        let (_, largest) = largest_allocation(|| announced_node_id(&m));
        prop_assert!(largest <= alloc_cap(m.len()));
    }

    /// Any byte stream read as frames: each read yields a body within the
    /// limit that is exactly what the prefix announced, or an error; the
    /// buffer never exceeds what arrived (plus the initial capacity).
    #[test]
    fn random_streams_frame_or_fail_cleanly(
        stream in proptest::collection::vec(any::<u8>(), 0..700),
        small_prefix in any::<bool>(),
        max in 1usize..512,
    ) {
        let mut stream = stream;
        if small_prefix && stream.len() >= LENGTH_PREFIX {
            // Make the announced length plausible most of the time.
            stream[0] = 0;
            stream[1] = 0;
            stream[2] %= 3;
        }
        let mut reader = stream.as_slice();
        for _ in 0..stream.len() + 1 {
            let before = reader.len();
            let (r, largest) = largest_allocation(|| testbed::fuzz::runtime().block_on(read_frame(&mut reader, max)));
            match r {
                Ok(body) => {
                    prop_assert!(!body.is_empty() && body.len() <= max);
                    prop_assert_eq!(before - reader.len(), LENGTH_PREFIX + body.len());
                    // The body buffer follows the bytes read (read_to_end may
                    // round its growth up), never the announced length alone.
                    prop_assert!(largest <= 2 * max + 64, "{} for a body of {}", largest, body.len());
                }
                Err(FrameError::Io(_) | FrameError::Empty | FrameError::TooLarge { .. }) => break,
            }
        }
    }
}

/// Found reviewing the decoders for this fuzz target, and failing here
/// before the fix: an 8-byte response whose string field claims 60 MiB.
/// bincode allocates a string's buffer before reading it, so under the fixed
/// 64 MiB decode limit this frame made the receiver allocate 60 MiB. The
/// limit now scales with the input (`encoding::DECODE_TIERS`).
#[test]
fn fixture_tiny_message_claiming_a_huge_string() {
    // Response::AppendEntries (variant 0), Err (1), RemoteFailure::Stopped
    // (0), then the string's length: varint marker 0xfc and a u32 of 60 MiB.
    let mut frame = vec![0x00, 0x01, 0x00, 0xfc];
    frame.extend_from_slice(&(60u32 << 20).to_le_bytes());
    let (r, largest) = largest_allocation(|| decode::<Response>(&frame));
    assert!(
        matches!(r, Err(EncodingError::Decode(_))),
        "{r:?} for {frame:02x?}"
    );
    assert!(
        largest <= alloc_cap(frame.len()),
        "allocated {largest} bytes for an {}-byte frame",
        frame.len()
    );
}

/// A frame announcing the maximum and then stalling holds only the initial
/// body capacity, not the announced length.
#[test]
fn fixture_announced_but_unsent_frame_allocates_little() {
    let max = 16 << 20;
    let mut stream = (max as u32).to_be_bytes().to_vec();
    stream.extend_from_slice(&[1, 2, 3]);
    let (r, largest) = largest_allocation(|| {
        testbed::fuzz::runtime().block_on(read_frame(&mut stream.as_slice(), max))
    });
    assert!(matches!(r, Err(FrameError::Io(_))), "{r:?}");
    assert!(
        largest <= edgelb_consensus::wire::frame::INITIAL_BODY_CAPACITY,
        "{largest}"
    );
}

/// The seeds themselves decode (so the mutation properties start from
/// valid messages, not from garbage).
#[test]
fn seeds_are_valid_messages() {
    let (requests, responses) = seeds();
    for r in requests {
        decode::<Request>(r).unwrap();
    }
    for r in responses {
        decode::<Response>(r).unwrap();
    }
    assert_eq!(announced_node_id(&seed_hello()).unwrap(), 2);
}
