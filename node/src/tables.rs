//! Applied cluster state -> per-VIP Maglev tables and the cluster digest.
//! Pure: no I/O, so every node computes the same result from the same state
//! (pinned by golden vectors in the tests).

use std::{collections::BTreeMap, net::IpAddr};

use edgelb_consensus::{ClusterState, MaglevInput, VipKey};
use maglev::{Table, TableSize};

/// The Maglev table of one VIP, ready for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipTable {
    /// Backends the data plane must know: active and draining ones (draining
    /// backends get no slots but keep their established flows), in the
    /// table's canonical order. Down backends are left out, so their flows stop.
    pub backends: Vec<IpAddr>,
    /// Slot -> index into `backends`, or [`maglev::NO_BACKEND`]; empty when no
    /// backend is active (the VIP's packets are dropped and counted).
    pub slots: Vec<u32>,
    /// [`maglev::Table::fingerprint`] of the table.
    pub fingerprint: u64,
}

/// Every VIP's table, and the digest that nodes compare.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableSet {
    /// Table version of the state the tables were computed from.
    pub version: u64,
    /// Per VIP, in key order.
    pub tables: BTreeMap<VipKey, VipTable>,
    /// Digest over the settings, every VIP key and table fingerprint.
    pub digest: u64,
}

/// Why tables could not be computed (a bug or an impossible state: the
/// consensus layer validates every command).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Maglev refused the input.
    #[error("Maglev table for VIP {vip}: {source}")]
    Maglev {
        /// The VIP.
        vip: VipKey,
        /// Maglev's error.
        source: maglev::Error,
    },
    /// The replicated table size is not usable.
    #[error("table size {0}: {1}")]
    Size(u32, maglev::Error),
}

/// Computes every VIP's table from the applied state.
pub fn compute(state: &ClusterState) -> Result<TableSet, TableError> {
    let size = TableSize::new(state.settings.table_size)
        .map_err(|e| TableError::Size(state.settings.table_size, e))?;
    let mut tables = BTreeMap::new();
    for key in state.vips.keys() {
        // The effective (health-aware) input, replicated, so identical on
        // every node.
        let Some(input) = state.maglev_input(key) else {
            continue;
        };
        tables.insert(*key, build(key, &input)?);
    }
    let digest = digest(state.settings.hash_seed, size.get(), &tables);
    Ok(TableSet {
        version: state.version,
        tables,
        digest,
    })
}

/// Builds one VIP's table from its Maglev input (the current one, or the
/// previous one kept for second-hop lookups).
pub fn build(key: &VipKey, input: &MaglevInput) -> Result<VipTable, TableError> {
    let size =
        TableSize::new(input.table_size).map_err(|e| TableError::Size(input.table_size, e))?;
    let entries = input
        .backends
        .iter()
        .map(|b| (b.address, b.weight, b.state));
    let table = Table::build_with_states(size, entries)
        .map_err(|source| TableError::Maglev { vip: *key, source })?;
    let backends: Vec<IpAddr> = table.backends().iter().map(|b| *b.key()).collect();
    let slots = if table.is_empty() {
        Vec::new()
    } else {
        table.entries().to_vec()
    };
    Ok(VipTable {
        backends,
        slots,
        fingerprint: table.fingerprint(),
    })
}

/// Fixed SipHash keys of the digest ("edgelb-digest-v1").
const DIGEST_KEY: (u64, u64) = (0x6564_6765_6c62_2d64, 0x6967_6573_742d_7631);

/// The cluster digest: SipHash-2-4 (keys [`DIGEST_KEY`]) over the hash seed
/// (u64 LE), table size (u32 LE), then per VIP in key order its canonical
/// bytes ([`vip_key_bytes`]) and its table fingerprint (u64 LE).
pub fn digest(hash_seed: u64, table_size: u32, tables: &BTreeMap<VipKey, VipTable>) -> u64 {
    let mut bytes = Vec::with_capacity(12 + tables.len() * 28);
    bytes.extend_from_slice(&hash_seed.to_le_bytes());
    bytes.extend_from_slice(&table_size.to_le_bytes());
    for (key, table) in tables {
        bytes.extend_from_slice(&vip_key_bytes(key));
        bytes.extend_from_slice(&table.fingerprint.to_le_bytes());
    }
    maglev::siphash24(DIGEST_KEY.0, DIGEST_KEY.1, &bytes)
}

/// Canonical bytes of a VIP key: family (4 or 6), the address's 16 bytes
/// (IPv4 in the first 4, rest zero), port (u16 BE), protocol number.
pub fn vip_key_bytes(key: &VipKey) -> [u8; 20] {
    let mut b = [0u8; 20];
    match key.address {
        IpAddr::V4(a) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b[0] = 6;
            b[1..17].copy_from_slice(&a.octets());
        }
    }
    b[17..19].copy_from_slice(&key.port.to_be_bytes());
    b[19] = match key.protocol {
        edgelb_consensus::Protocol::Tcp => 6,
        edgelb_consensus::Protocol::Udp => 17,
    };
    b
}

/// Formats a digest the way nodes report it.
pub fn digest_hex(d: u64) -> String {
    format!("{d:016x}")
}
