//! Pinned outputs (golden vectors) of table format version 2. Every node must
//! build bit-identical tables whatever build of EdgeLB it runs, so any change
//! to these values is a change of the table format: it needs a new
//! `ALGORITHM_VERSION` and a plan for mixed clusters.
//!
//! Input: the backend sets below. Output: slot counts, sample slots and the
//! table fingerprint (which covers every entry, backend, weight and state),
//! at each table size EdgeLB documents (16,381, 65,537, 131,071, 655,373).
//! `tests/table.rs` checks the same tables against a slow reference
//! implementation written from the crate docs, so these are the documented
//! algorithm's values, not just this implementation's.

use std::net::SocketAddr;

use maglev::{BackendState, Table, TableSize, ALGORITHM_VERSION};

/// Socket addresses of both families, mixed weights, and every state.
fn addresses() -> Vec<(SocketAddr, u32, BackendState)> {
    vec![
        ("10.0.0.1:80".parse().unwrap(), 1, BackendState::Active),
        ("10.0.0.2:80".parse().unwrap(), 1, BackendState::Active),
        ("10.0.0.3:80".parse().unwrap(), 2, BackendState::Active),
        (
            "[2001:db8::7]:443".parse().unwrap(),
            3,
            BackendState::Active,
        ),
        ("10.0.0.4:80".parse().unwrap(), 5, BackendState::Draining),
        ("10.0.0.5:80".parse().unwrap(), 5, BackendState::Down),
        ("10.0.0.6:80".parse().unwrap(), 0, BackendState::Active),
    ]
}

/// Ten named backends of weights 1, 2, 3, 1, 2, 3, ...
fn names() -> Vec<(String, u32)> {
    (0..10)
        .map(|i| (format!("backend-{i}"), 1 + i % 3))
        .collect()
}

/// Slots sampled from each table (taken mod M).
const SAMPLES: [usize; 8] = [0, 1, 2, 3, 1000, 12345, 16380, 65536];

struct Golden {
    m: u32,
    slots: &'static [u32],
    first16: [u32; 16],
    samples: [u32; 8],
    fingerprint: u64,
}

fn check(t: &Table<impl Sized>, want: &Golden, what: &str) {
    let m = want.m as usize;
    let slots: Vec<u32> = t.backends().iter().map(|b| b.slots()).collect();
    assert_eq!(slots, want.slots, "{what} M={m}: slot counts");
    assert_eq!(t.entries()[..16], want.first16, "{what} M={m}: first slots");
    let samples: Vec<u32> = SAMPLES.iter().map(|&s| t.entries()[s % m]).collect();
    assert_eq!(samples, want.samples, "{what} M={m}: sampled slots");
    assert_eq!(
        t.fingerprint(),
        want.fingerprint,
        "{what} M={m}: fingerprint"
    );
}

#[test]
fn format_version_is_2() {
    assert_eq!(ALGORITHM_VERSION, 2);
}

#[test]
fn smallest_table_is_pinned_slot_by_slot() {
    let t = Table::build_with_states(TableSize::new(13).unwrap(), addresses()).unwrap();
    // Index order: 10.0.0.1..6 (family tag 4), then the IPv6 one.
    assert_eq!(t.entries(), [1, 1, 2, 2, 6, 6, 0, 6, 6, 2, 2, 0, 6]);
    assert_eq!(t.fingerprint(), 0x3a3d_e1bc_690c_38dc);
}

#[test]
fn address_tables_are_pinned() {
    let goldens = [
        Golden {
            m: 16_381,
            slots: &[2340, 2340, 4680, 0, 0, 0, 7021],
            first16: [6, 0, 2, 6, 0, 6, 6, 0, 6, 6, 6, 6, 2, 6, 6, 0],
            samples: [6, 0, 2, 6, 0, 0, 2, 2],
            fingerprint: 0x938c_2c1f_7ae4_a60b,
        },
        Golden {
            m: 65_537,
            slots: &[9363, 9362, 18725, 0, 0, 0, 28087],
            first16: [6, 2, 2, 2, 1, 2, 6, 2, 1, 1, 6, 6, 0, 6, 6, 6],
            samples: [6, 2, 2, 2, 6, 1, 6, 6],
            fingerprint: 0xfbcd_d166_2211_7efc,
        },
        Golden {
            m: 131_071,
            slots: &[18725, 18724, 37449, 0, 0, 0, 56173],
            first16: [2, 2, 6, 2, 2, 1, 2, 2, 6, 1, 2, 6, 0, 6, 0, 2],
            samples: [2, 2, 6, 2, 6, 1, 6, 6],
            fingerprint: 0x18c8_94c3_0baf_4dce,
        },
        Golden {
            m: 655_373,
            slots: &[93625, 93625, 187249, 0, 0, 0, 280874],
            first16: [2, 6, 2, 2, 0, 2, 1, 6, 2, 1, 6, 2, 0, 6, 6, 6],
            samples: [2, 6, 2, 2, 6, 0, 2, 0],
            fingerprint: 0x2d7d_0dd5_4690_1412,
        },
    ];
    for g in &goldens {
        let t = Table::build_with_states(TableSize::new(g.m).unwrap(), addresses()).unwrap();
        check(&t, g, "addresses");
    }
}

#[test]
fn named_tables_are_pinned() {
    let goldens = [
        Golden {
            m: 16_381,
            slots: &[862, 1724, 2587, 862, 1724, 2587, 862, 1724, 2587, 862],
            first16: [1, 9, 0, 6, 9, 1, 4, 4, 2, 0, 0, 0, 0, 0, 3, 1],
            samples: [1, 9, 0, 6, 8, 5, 5, 0],
            fingerprint: 0x469b_6570_def9_cbb4,
        },
        Golden {
            m: 65_537,
            slots: &[
                3449, 6899, 10348, 3449, 6899, 10348, 3449, 6899, 10348, 3449,
            ],
            first16: [2, 2, 2, 8, 2, 2, 3, 7, 2, 2, 2, 2, 2, 1, 9, 1],
            samples: [2, 2, 2, 8, 8, 4, 6, 2],
            fingerprint: 0x054f_b92b_0632_9c0d,
        },
        Golden {
            m: 131_071,
            slots: &[
                6899, 13797, 20695, 6899, 13797, 20695, 6899, 13797, 20695, 6898,
            ],
            first16: [2, 7, 4, 3, 6, 2, 7, 3, 1, 4, 5, 5, 5, 0, 5, 5],
            samples: [2, 7, 4, 3, 8, 2, 9, 8],
            fingerprint: 0x57fd_7984_722d_dee1,
        },
        Golden {
            m: 655_373,
            slots: &[
                34493, 68987, 103480, 34493, 68987, 103480, 34493, 68987, 103480, 34493,
            ],
            first16: [7, 4, 5, 1, 4, 2, 8, 5, 2, 7, 2, 1, 1, 5, 6, 7],
            samples: [7, 4, 5, 1, 0, 4, 7, 8],
            fingerprint: 0x308e_b913_443f_28d4,
        },
    ];
    for g in &goldens {
        let t = Table::build(TableSize::new(g.m).unwrap(), names()).unwrap();
        check(&t, g, "names");
    }
}

#[test]
fn equal_weight_and_empty_tables_are_pinned() {
    // Equal weights: the paper's plain round robin (the same entries format
    // version 1 gave).
    let abc = Table::build(TableSize::new(251).unwrap(), [("a", 1), ("b", 1), ("c", 1)]).unwrap();
    assert_eq!(
        abc.entries()[..16],
        [2, 2, 0, 0, 0, 2, 1, 0, 2, 0, 2, 1, 1, 1, 0, 0]
    );
    assert_eq!(abc.fingerprint(), 0x2483_ba86_56e6_828f);
    let empty = Table::<&str>::build(TableSize::new(251).unwrap(), []).unwrap();
    assert_eq!(empty.fingerprint(), 0xc309_df18_c119_73f9);
}
