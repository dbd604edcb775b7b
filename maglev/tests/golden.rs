//! Pinned outputs. Every node must build bit-identical tables whatever build of
//! EdgeLB it runs, so any change to these values is a change of the table
//! format: it needs a new `ALGORITHM_VERSION` and a plan for mixed clusters.

use std::net::SocketAddr;

use maglev::{Table, TableSize, ALGORITHM_VERSION};

fn backends() -> Vec<(SocketAddr, u32)> {
    vec![
        ("10.0.0.1:80".parse().unwrap(), 1),
        ("10.0.0.2:80".parse().unwrap(), 1),
        ("10.0.0.3:80".parse().unwrap(), 2),
        ("[2001:db8::7]:443".parse().unwrap(), 3),
        ("10.0.0.4:80".parse().unwrap(), 0),
    ]
}

#[test]
fn version_1_tables_are_pinned() {
    assert_eq!(ALGORITHM_VERSION, 1);

    let small = Table::build(TableSize::new(13).unwrap(), backends()).unwrap();
    assert_eq!(small.entries(), [1, 4, 2, 2, 4, 4, 0, 1, 4, 2, 2, 0, 4]);
    assert_eq!(small.fingerprint(), 0x6164_1fcc_224b_cf5d);

    let big = Table::build(TableSize::DEFAULT, backends()).unwrap();
    let slots: Vec<u32> = big.backends().iter().map(|b| b.slots()).collect();
    assert_eq!(slots, [9362, 9362, 18725, 0, 28088]);
    assert_eq!(
        big.entries()[..16],
        [4, 2, 2, 2, 1, 2, 4, 2, 1, 1, 4, 4, 0, 4, 4, 4]
    );
    assert_eq!(big.fingerprint(), 0x53a7_a3df_db0a_e62d);

    let names = Table::build(TableSize::new(251).unwrap(), [("a", 1), ("b", 1), ("c", 1)]).unwrap();
    assert_eq!(
        names.entries()[..16],
        [2, 2, 0, 0, 0, 2, 1, 0, 2, 0, 2, 1, 1, 1, 0, 0]
    );
    assert_eq!(names.fingerprint(), 0xc59f_f567_471e_7583);

    let empty = Table::<&str>::build(TableSize::new(251).unwrap(), []).unwrap();
    assert_eq!(empty.fingerprint(), 0x374f_8445_13e9_f816);
}
