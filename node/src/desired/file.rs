//! The TOML form of a [`DesiredState`]: parsing with errors that name the
//! line and the field path (`vips[2].backends[0].weight`), and rendering of
//! the canonical form (what `lbctl export` writes).

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use edgelb_consensus::{
    cluster_state::MAX_SECOND_HOP_WINDOW_SECS,
    cluster_state::{MAX_BACKENDS_PER_VIP, MAX_TABLE_SIZE, MAX_WEIGHT, MIN_TABLE_SIZE, MIN_WEIGHT},
    command::check_address,
    Backend, BackendState, ClusterSettings, ConnectionSettings, Encapsulation, FloodAdmission, Vip,
    VipFlags, VipKey,
};
use serde::Deserialize;
use toml::Spanned;

use super::DesiredState;
use crate::{
    cli::parse::vip_key,
    located::{self, line_of},
};

/// GUE port used when a GUE VIP names none (as `lbctl vip add`).
const DEFAULT_GUE_PORT: u16 = 6080;
/// Weight of a backend that names none (as `lbctl backend add`).
const DEFAULT_WEIGHT: u32 = 100;

/// A desired-state file that cannot be used; nothing was applied.
/// Shown as `FILE:LINE: FIELD: MESSAGE`.
pub use crate::located::LocatedError as DesiredError;

/// `[settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsEntry {
    hash_seed: u64,
    table_size: TableSizeValue,
}

/// `[connection]`: the connection-keeping cluster settings; a key left out
/// takes its default (`second_hop_window_secs = 60`, `flood_threshold =
/// "node"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionEntry {
    #[serde(default)]
    second_hop_window_secs: Option<WindowValue>,
    #[serde(default)]
    flood_threshold: Option<FloodValue>,
}

/// A second-hop window the cluster accepts.
#[derive(Debug, Deserialize)]
#[serde(try_from = "i64")]
struct WindowValue(u32);

impl TryFrom<i64> for WindowValue {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(w) if w <= MAX_SECOND_HOP_WINDOW_SECS => Ok(Self(w)),
            _ => Err(format!(
                "{n} is not in 0..={MAX_SECOND_HOP_WINDOW_SECS} seconds"
            )),
        }
    }
}

/// `flood_threshold` as written: a rate or a word.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FloodWritten {
    Rate(i64),
    Word(String),
}

/// A flood threshold the cluster accepts.
#[derive(Debug, Deserialize)]
#[serde(try_from = "FloodWritten")]
struct FloodValue(FloodAdmission);

impl TryFrom<FloodWritten> for FloodValue {
    type Error = String;
    fn try_from(w: FloodWritten) -> Result<Self, String> {
        let text = match w {
            FloodWritten::Rate(n) => n.to_string(),
            FloodWritten::Word(word) => word,
        };
        crate::cli::args::parse_flood_threshold(&text).map(Self)
    }
}

/// One `[[vips]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VipEntry {
    vip: Spanned<VipValue>,
    #[serde(default)]
    encap: EncapName,
    #[serde(default)]
    gue_port: Option<Spanned<u16>>,
    #[serde(default)]
    hash_no_source_port: bool,
    #[serde(default)]
    hash_dst_port_only: bool,
    #[serde(default)]
    backends: Vec<BackendEntry>,
}

/// One `[[vips.backends]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEntry {
    address: Spanned<AddressValue>,
    #[serde(default)]
    weight: WeightValue,
    #[serde(default)]
    state: StateName,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    #[serde(default)]
    settings: Option<SettingsEntry>,
    #[serde(default)]
    connection: Option<ConnectionEntry>,
    #[serde(default)]
    vips: Vec<VipEntry>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EncapName {
    #[default]
    Ipip,
    Gue,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StateName {
    #[default]
    Active,
    Draining,
    Down,
}

impl From<StateName> for BackendState {
    fn from(s: StateName) -> Self {
        match s {
            StateName::Active => BackendState::Active,
            StateName::Draining => BackendState::Draining,
            StateName::Down => BackendState::Down,
        }
    }
}

/// A backend state as the file spells it.
pub(crate) fn state_name(s: BackendState) -> &'static str {
    match s {
        BackendState::Active => "active",
        BackendState::Draining => "draining",
        BackendState::Down => "down",
    }
}

/// A VIP in `lbctl`'s notation (`ADDR:PORT/PROTO`).
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct VipValue(VipKey);

impl TryFrom<String> for VipValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let key = vip_key(&s)?;
        check_address(key.address).map_err(|e| e.to_string())?;
        Ok(Self(key))
    }
}

/// A backend address that can receive tunnelled packets.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct AddressValue(IpAddr);

impl TryFrom<String> for AddressValue {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let address: IpAddr = s
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address"))?;
        check_address(address).map_err(|e| e.to_string())?;
        Ok(Self(address))
    }
}

/// A weight in `MIN_WEIGHT..=MAX_WEIGHT`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "i64")]
struct WeightValue(u32);

impl Default for WeightValue {
    fn default() -> Self {
        Self(DEFAULT_WEIGHT)
    }
}

impl TryFrom<i64> for WeightValue {
    type Error = String;
    fn try_from(w: i64) -> Result<Self, String> {
        match u32::try_from(w) {
            Ok(w) if (MIN_WEIGHT..=MAX_WEIGHT).contains(&w) => Ok(Self(w)),
            _ => Err(format!("{w} is not in {MIN_WEIGHT}..={MAX_WEIGHT}")),
        }
    }
}

/// A Maglev table size the cluster accepts.
#[derive(Debug, Deserialize)]
#[serde(try_from = "i64")]
struct TableSizeValue(u32);

impl TryFrom<i64> for TableSizeValue {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(m)
                if (MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&m)
                    && maglev::TableSize::new(m).is_ok() =>
            {
                Ok(Self(m))
            }
            _ => Err(format!(
                "{n} is not a prime in {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}"
            )),
        }
    }
}

/// Parses and checks a desired-state file; `path` names it in errors.
pub fn parse(text: &str, path: &std::path::Path) -> Result<DesiredState, DesiredError> {
    let error = |line: Option<usize>, field: String, message: String| DesiredError {
        path: path.to_owned(),
        line,
        field,
        message,
    };
    let file: FileEntry = located::deserialize(text, path)?;

    let settings = file.settings.map(|s| ClusterSettings {
        hash_seed: s.hash_seed,
        table_size: s.table_size.0,
    });
    let connection = file.connection.map(|c| {
        let default = ConnectionSettings::default();
        ConnectionSettings {
            second_hop_window_secs: c
                .second_hop_window_secs
                .map_or(default.second_hop_window_secs, |w| w.0),
            flood_threshold: c.flood_threshold.map_or(default.flood_threshold, |f| f.0),
        }
    });
    let mut vips: BTreeMap<VipKey, (usize, Vip)> = BTreeMap::new();
    // The data plane has one GUE port: the first GUE VIP's, and where it is.
    let mut gue: Option<(u16, usize)> = None;
    for (i, entry) in file.vips.into_iter().enumerate() {
        let key = entry.vip.get_ref().0;
        let vip_line = line_of(text, entry.vip.span().start);
        if let Some((first, _)) = vips.get(&key) {
            return Err(error(
                Some(vip_line),
                format!("vips[{i}].vip"),
                format!("{key} is already vips[{first}]"),
            ));
        }
        let encapsulation = match (entry.encap, entry.gue_port) {
            (EncapName::Ipip, Some(port)) => {
                return Err(error(
                    Some(line_of(text, port.span().start)),
                    format!("vips[{i}].gue_port"),
                    "only with encap = \"gue\"".into(),
                ))
            }
            (EncapName::Ipip, None) => Encapsulation::IpIp,
            (EncapName::Gue, port) => {
                let (value, line) = match port {
                    Some(p) => (*p.get_ref(), line_of(text, p.span().start)),
                    None => (DEFAULT_GUE_PORT, vip_line),
                };
                if value == 0 {
                    return Err(error(
                        Some(line),
                        format!("vips[{i}].gue_port"),
                        "0 is not in 1..=65535".into(),
                    ));
                }
                match gue {
                    Some((other, _)) if other != value => {
                        return Err(error(
                            Some(line),
                            format!("vips[{i}].gue_port"),
                            format!("{value}: the file's GUE VIPs use port {other} (one GUE port per cluster)"),
                        ))
                    }
                    _ => gue = Some((value, i)),
                }
                Encapsulation::Gue { port: value }
            }
        };
        if entry.backends.len() > MAX_BACKENDS_PER_VIP {
            return Err(error(
                Some(vip_line),
                format!("vips[{i}].backends"),
                format!(
                    "{} backends, more than the {MAX_BACKENDS_PER_VIP} a VIP may have",
                    entry.backends.len()
                ),
            ));
        }
        let mut backends: BTreeMap<IpAddr, (usize, Backend)> = BTreeMap::new();
        for (j, b) in entry.backends.into_iter().enumerate() {
            let address = b.address.get_ref().0;
            if let Some((first, _)) = backends.get(&address) {
                return Err(error(
                    Some(line_of(text, b.address.span().start)),
                    format!("vips[{i}].backends[{j}].address"),
                    format!("{address} is already vips[{i}].backends[{first}]"),
                ));
            }
            let backend = Backend {
                address,
                weight: b.weight.0,
                state: b.state.into(),
            };
            backends.insert(address, (j, backend));
        }
        let vip = Vip {
            key,
            flags: VipFlags {
                hash_without_source_port: entry.hash_no_source_port,
                hash_dst_port_only: entry.hash_dst_port_only,
            },
            encapsulation,
            backends: backends.into_iter().map(|(a, (_, b))| (a, b)).collect(),
        };
        vips.insert(key, (i, vip));
    }
    Ok(DesiredState {
        settings,
        connection,
        vips: vips.into_iter().map(|(k, (_, v))| (k, v)).collect(),
    })
}

/// The canonical TOML of `state`: settings first, VIPs by key, backends by
/// address, every field written out (defaults included), so that parsing
/// it gives `state` back and equal states render to equal text.
pub fn render(state: &DesiredState) -> String {
    let mut out = String::from("# EdgeLB desired state (lbctl export / lbctl apply -f).\n");
    if let Some(s) = &state.settings {
        let _ = write!(
            out,
            "\n[settings]\nhash_seed = {}\ntable_size = {}\n",
            s.hash_seed, s.table_size
        );
    }
    if let Some(c) = &state.connection {
        let flood = match c.flood_threshold {
            FloodAdmission::NodeConfig => "\"node\"".to_owned(),
            FloodAdmission::FromCapacity => "\"auto\"".to_owned(),
            FloodAdmission::Off => "\"off\"".to_owned(),
            FloodAdmission::PerSecond(n) => n.to_string(),
        };
        let _ = write!(
            out,
            "\n[connection]\nsecond_hop_window_secs = {}\nflood_threshold = {flood}\n",
            c.second_hop_window_secs
        );
    }
    for vip in state.vips.values() {
        let _ = write!(out, "\n[[vips]]\nvip = \"{}\"\n", vip.key);
        match vip.encapsulation {
            Encapsulation::IpIp => out.push_str("encap = \"ipip\"\n"),
            Encapsulation::Gue { port } => {
                let _ = write!(out, "encap = \"gue\"\ngue_port = {port}\n");
            }
        }
        let _ = write!(
            out,
            "hash_no_source_port = {}\nhash_dst_port_only = {}\n",
            vip.flags.hash_without_source_port, vip.flags.hash_dst_port_only
        );
        for b in vip.backends.values() {
            let _ = write!(
                out,
                "\n[[vips.backends]]\naddress = \"{}\"\nweight = {}\nstate = \"{}\"\n",
                b.address,
                b.weight,
                state_name(b.state)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
