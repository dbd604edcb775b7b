//! The daemon's TOML configuration file.
//!
//! Every field is documented here; unknown fields are rejected so a typo never
//! silently falls back to a default. Validation errors name the field.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// Errors reading or validating a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown field, wrong type...).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the field and line.
        message: String,
    },
    /// A field has a value outside what it allows.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the offending field, e.g. `bgp.peers[1].remote_asn`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's identity and local state.
    pub node: NodeSection,
    /// How this node reaches the rest of the Raft cluster.
    pub cluster: ClusterSection,
    /// The admin API `lbctl` talks to.
    pub admin: AdminSection,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// The XDP forwarder.
    pub xdp: XdpSection,
    /// The BGP speaker.
    pub bgp: BgpSection,
    /// Backend health checking.
    #[serde(default)]
    pub health: HealthSection,
    /// What happens on drain and shutdown.
    #[serde(default)]
    pub drain: DrainSection,
}

/// `[node]`: this node's identity.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Raft node id, unique in the cluster and never reused (>= 1).
    pub id: u64,
    /// Directory for the Raft log, vote and snapshots (created if missing).
    pub data_dir: PathBuf,
}

/// `[cluster]`: the Raft transport.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Address the Raft RPC server listens on, e.g. `10.0.0.1:7000`.
    pub listen: SocketAddr,
    /// Address other nodes use to reach this one (defaults to `listen`).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// File holding the cluster secret that authenticates every Raft message
    /// (at least 16 bytes; surrounding whitespace is ignored).
    pub secret_file: PathBuf,
    /// Initial voters, this node included, when bootstrapping a new cluster.
    /// Empty on a node that will be added to an existing cluster with
    /// `lbctl node add`.
    #[serde(default)]
    pub initial_members: Vec<MemberConfig>,
    /// Election timeout lower bound in milliseconds (upper bound is twice it).
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Heartbeat interval in milliseconds (must be below the election timeout).
    #[serde(default = "defaults::heartbeat_ms")]
    pub heartbeat_ms: u64,
}

/// One initial member of the cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its Raft node id.
    pub id: u64,
    /// Its Raft RPC address.
    pub addr: SocketAddr,
    /// Its admin API address, so `lbctl status` can collect every node's
    /// report through any node.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
}

/// `[admin]`: the API used by `lbctl`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address the admin API listens on, e.g. `127.0.0.1:7100`.
    pub listen: SocketAddr,
    /// File holding the admin token `lbctl` must present (at least 16 bytes).
    pub token_file: PathBuf,
}

/// `[metrics]`: the Prometheus scrape endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address serving `/metrics`; omit to disable.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// `[log]`: tracing output.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `plain` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Filter in `RUST_LOG` syntax; default `info`.
    #[serde(default)]
    pub level: Option<String>,
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    /// Native driver mode: the production mode.
    #[default]
    Driver,
    /// Generic (SKB) mode: for development only.
    Generic,
}

/// `[xdp]`: the forwarder on this node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct XdpSection {
    /// Interfaces the forwarder attaches to (at least one).
    pub interfaces: Vec<String>,
    /// `driver` (default) or `generic`.
    #[serde(default)]
    pub mode: XdpAttachMode,
    /// bpffs directory where maps and the program are pinned, so a restarted
    /// daemon adopts them without dropping traffic.
    #[serde(default = "defaults::pin_dir")]
    pub pin_dir: PathBuf,
    /// Outer IPv4 source of encapsulated packets, `ADDR/LEN`: the host bits
    /// below LEN carry flow entropy so backends spread flows over their
    /// receive queues (as Katran does). `ADDR` alone means `ADDR/32`.
    #[serde(default = "defaults::encap_source_v4")]
    pub encap_source_v4: String,
    /// Outer IPv6 source, `ADDR/LEN` with LEN in 96..=128.
    #[serde(default = "defaults::encap_source_v6")]
    pub encap_source_v6: String,
    /// Connection-cache entries per CPU (64 bytes each; rounded up to a
    /// power-of-two number of 4-way sets).
    #[serde(default = "defaults::conn_table_size")]
    pub conn_table_size: u32,
    /// Seconds a UDP flow stays pinned to its backend without packets.
    #[serde(default = "defaults::udp_flow_timeout_secs")]
    pub udp_flow_timeout_secs: u32,
}

/// `[bgp]`: the speaker announcing this node's VIPs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BgpSection {
    /// This node's AS number (4-byte ASNs allowed).
    pub local_asn: u32,
    /// BGP identifier, an IPv4 address unique among the peers.
    pub router_id: std::net::Ipv4Addr,
    /// Communities added to every VIP route, as `ASN:value`.
    #[serde(default)]
    pub communities: Vec<String>,
    /// MULTI_EXIT_DISC on every route (unset: none sent).
    #[serde(default)]
    pub med: Option<u32>,
    /// Extra copies of `local_asn` in the AS_PATH of every route (0..=10),
    /// e.g. to make this site a backup of another.
    #[serde(default)]
    pub as_path_prepend: u8,
    /// Prefixes announced alongside the VIP host routes while the node is
    /// ready (e.g. `192.0.2.0/24` covering the VIPs), without host bits.
    #[serde(default)]
    pub aggregates: Vec<String>,
    /// Graceful restart (RFC 4724) time offered to routers, in seconds
    /// (1..=4095); 0 turns the capability off. Routers keep this node's
    /// routes that long across a hot restart (SIGUSR2) — and also when the
    /// daemon dies silently, so keep it short (default 30); a restarted
    /// node must become ready within half of it.
    #[serde(default = "defaults::graceful_restart_secs")]
    pub graceful_restart_secs: u16,
    /// The routers to announce to (at least one).
    pub peers: Vec<BgpPeerConfig>,
}

/// One BGP neighbour.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BgpPeerConfig {
    /// The router's address.
    pub address: IpAddr,
    /// The router's AS number; equal to `local_asn` for iBGP.
    pub remote_asn: u32,
    /// TCP port (default 179).
    #[serde(default = "defaults::bgp_port")]
    pub port: u16,
    /// Proposed hold time in seconds: 0 or at least 3 (default 9).
    #[serde(default = "defaults::hold_time_secs")]
    pub hold_time_secs: u16,
    /// Next hop announced for IPv4 VIPs (defaults to the session's local address).
    #[serde(default)]
    pub next_hop_v4: Option<IpAddr>,
    /// Next hop announced for IPv6 VIPs.
    #[serde(default)]
    pub next_hop_v6: Option<IpAddr>,
}

/// `[health]`: how backends are checked.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Whether this node runs health checks at all (default true).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// `tcp` (connect) or `http` (GET, expected status).
    #[serde(default)]
    pub kind: HealthKind,
    /// Port to check; default: the VIP's port.
    #[serde(default)]
    pub port: Option<u16>,
    /// HTTP path (default `/`).
    #[serde(default = "defaults::http_path")]
    pub http_path: String,
    /// HTTP status that means healthy (default 200).
    #[serde(default = "defaults::http_status")]
    pub http_expect_status: u16,
    /// Milliseconds between checks of one backend.
    #[serde(default = "defaults::health_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds before a check counts as failed.
    #[serde(default = "defaults::health_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes before a down backend is reported up.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Consecutive failures before an up backend is reported down.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            enabled: true,
            kind: HealthKind::default(),
            port: None,
            http_path: defaults::http_path(),
            http_expect_status: defaults::http_status(),
            interval_ms: defaults::health_interval_ms(),
            timeout_ms: defaults::health_timeout_ms(),
            rise: defaults::rise(),
            fall: defaults::fall(),
        }
    }
}

/// Kind of health check.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// A TCP connect that completes within the timeout.
    #[default]
    Tcp,
    /// An HTTP/1.1 GET answered with the expected status within the timeout.
    Http,
}

/// `[drain]`: shutdown behaviour.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrainSection {
    /// Seconds between withdrawing the routes and detaching XDP on SIGTERM,
    /// while the node keeps forwarding flows the routers still send.
    #[serde(default = "defaults::drain_period_secs")]
    pub period_secs: u64,
    /// Seconds the routes stay announced with a longer AS_PATH before they
    /// are withdrawn on SIGTERM (0: withdraw at once). Routers move new
    /// flows to the other nodes' shorter paths while this node's route still
    /// backs them up, so nothing is blackholed while routers converge.
    #[serde(default)]
    pub prepend_secs: u64,
    /// Extra copies of `bgp.local_asn` added during `prepend_secs` (1..=10).
    #[serde(default = "defaults::drain_prepend_count")]
    pub prepend_count: u8,
}

impl Default for DrainSection {
    fn default() -> Self {
        Self {
            period_secs: defaults::drain_period_secs(),
            prepend_secs: 0,
            prepend_count: defaults::drain_prepend_count(),
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    pub fn election_timeout_ms() -> u64 {
        1000
    }
    pub fn heartbeat_ms() -> u64 {
        250
    }
    pub fn pin_dir() -> PathBuf {
        PathBuf::from("/sys/fs/bpf/edgelb")
    }
    pub fn encap_source_v4() -> String {
        "172.16.0.0/16".into()
    }
    pub fn encap_source_v6() -> String {
        "fd00::/96".into()
    }
    pub fn conn_table_size() -> u32 {
        1 << 20
    }
    pub fn graceful_restart_secs() -> u16 {
        30
    }
    pub fn drain_prepend_count() -> u8 {
        3
    }
    pub fn udp_flow_timeout_secs() -> u32 {
        30
    }
    pub fn bgp_port() -> u16 {
        179
    }
    pub fn hold_time_secs() -> u16 {
        9
    }
    pub fn yes() -> bool {
        true
    }
    pub fn http_path() -> String {
        "/".into()
    }
    pub fn http_status() -> u16 {
        200
    }
    pub fn health_interval_ms() -> u64 {
        1000
    }
    pub fn health_timeout_ms() -> u64 {
        500
    }
    pub fn rise() -> u32 {
        2
    }
    pub fn fall() -> u32 {
        3
    }
    pub fn drain_period_secs() -> u64 {
        10
    }
}

impl Config {
    /// Reads, parses and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                path: path.to_owned(),
                field,
                message,
            })?;
        Ok(config)
    }

    /// The address other nodes and `lbctl status` use for this node's admin
    /// API: `admin.listen`, with the Raft advertise address's IP when it
    /// listens on all addresses.
    pub fn admin_advertise_addr(&self) -> SocketAddr {
        let listen = self.admin.listen;
        if listen.ip().is_unspecified() {
            SocketAddr::new(self.advertise_addr().ip(), listen.port())
        } else {
            listen
        }
    }

    /// The address other nodes use for this node's Raft RPCs.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.cluster.advertise.unwrap_or(self.cluster.listen)
    }

    /// `xdp.encap_source_v4` parsed.
    pub fn encap_source_v4(&self) -> Result<(std::net::Ipv4Addr, u8), String> {
        match parse_prefix(&self.xdp.encap_source_v4, 32)? {
            (IpAddr::V4(a), len) => Ok((a, len)),
            _ => Err("must be an IPv4 prefix".into()),
        }
    }

    /// `xdp.encap_source_v6` parsed.
    pub fn encap_source_v6(&self) -> Result<(std::net::Ipv6Addr, u8), String> {
        match parse_prefix(&self.xdp.encap_source_v6, 128)? {
            (IpAddr::V6(a), len) if len >= 96 => Ok((a, len)),
            (IpAddr::V6(_), _) => Err("prefix length must be within 96..=128".into()),
            _ => Err("must be an IPv6 prefix".into()),
        }
    }

    /// The election timeout range's upper end (the daemon runs Raft with
    /// `election_timeout_ms ..= 2 * election_timeout_ms`).
    pub fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.cluster.election_timeout_ms.saturating_mul(2))
    }

    /// How long a leader may go without a quorum acknowledging it before it
    /// counts itself cut off and withdraws: by then the majority side has
    /// elected another leader.
    pub fn quorum_ack_bound(&self) -> Duration {
        self.election_timeout_max()
    }

    /// The drain period as a duration.
    pub fn drain_period(&self) -> Duration {
        Duration::from_secs(self.drain.period_secs)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: &str| Err((field.to_owned(), msg.to_owned()));
        if self.node.id == 0 {
            return bad("node.id", "must be at least 1");
        }
        let c = &self.cluster;
        if c.election_timeout_ms < 50 || c.election_timeout_ms > 60_000 {
            return bad("cluster.election_timeout_ms", "must be within 50..=60000");
        }
        if c.heartbeat_ms == 0 || c.heartbeat_ms * 2 > c.election_timeout_ms {
            return bad(
                "cluster.heartbeat_ms",
                "must be at least 1 and at most half of election_timeout_ms",
            );
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, m) in c.initial_members.iter().enumerate() {
            if m.id == 0 || !ids.insert(m.id) {
                return Err((
                    format!("cluster.initial_members[{i}].id"),
                    "must be unique and at least 1".into(),
                ));
            }
        }
        if !c.initial_members.is_empty() && !ids.contains(&self.node.id) {
            return bad(
                "cluster.initial_members",
                "must include this node's own id (node.id)",
            );
        }
        let x = &self.xdp;
        if x.interfaces.is_empty() {
            return bad("xdp.interfaces", "must name at least one interface");
        }
        for (i, name) in x.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err((
                    format!("xdp.interfaces[{i}]"),
                    format!("`{name}` is not a valid interface name"),
                ));
            }
        }
        if let Err(e) = self.encap_source_v4() {
            return bad("xdp.encap_source_v4", &e);
        }
        if let Err(e) = self.encap_source_v6() {
            return bad("xdp.encap_source_v6", &e);
        }
        if x.conn_table_size < 1024 || x.conn_table_size > (1 << 26) {
            return bad("xdp.conn_table_size", "must be within 1024..=67108864");
        }
        if x.udp_flow_timeout_secs == 0 {
            return bad("xdp.udp_flow_timeout_secs", "must be at least 1");
        }
        let b = &self.bgp;
        if b.local_asn == 0 || b.local_asn == 23456 {
            return bad("bgp.local_asn", "0 and 23456 (AS_TRANS) are reserved");
        }
        for (i, comm) in b.communities.iter().enumerate() {
            if parse_community(comm).is_none() {
                return Err((
                    format!("bgp.communities[{i}]"),
                    format!("`{comm}` is not ASN:value with both parts in 0..=65535"),
                ));
            }
        }
        if b.as_path_prepend > 10 {
            return bad("bgp.as_path_prepend", "must be within 0..=10");
        }
        for (i, agg) in b.aggregates.iter().enumerate() {
            if let Err(e) = parse_aggregate(agg) {
                return Err((format!("bgp.aggregates[{i}]"), e));
            }
        }
        if b.graceful_restart_secs > 4095 {
            return bad(
                "bgp.graceful_restart_secs",
                "must be within 0..=4095 (RFC 4724)",
            );
        }
        if b.peers.is_empty() {
            return bad("bgp.peers", "must list at least one peer");
        }
        for (i, p) in b.peers.iter().enumerate() {
            let f = |name: &str| format!("bgp.peers[{i}].{name}");
            if p.remote_asn == 0 || p.remote_asn == 23456 {
                return Err((
                    f("remote_asn"),
                    "0 and 23456 (AS_TRANS) are reserved".into(),
                ));
            }
            if p.port == 0 {
                return Err((f("port"), "must be at least 1".into()));
            }
            if p.hold_time_secs != 0 && p.hold_time_secs < 3 {
                return Err((
                    f("hold_time_secs"),
                    "must be 0 or at least 3 (RFC 4271)".into(),
                ));
            }
            if matches!(p.next_hop_v4, Some(IpAddr::V6(_))) {
                return Err((f("next_hop_v4"), "must be an IPv4 address".into()));
            }
            if matches!(p.next_hop_v6, Some(IpAddr::V4(_))) {
                return Err((f("next_hop_v6"), "must be an IPv6 address".into()));
            }
        }
        let h = &self.health;
        if h.interval_ms < 10 {
            return bad("health.interval_ms", "must be at least 10");
        }
        if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
            return bad(
                "health.timeout_ms",
                "must be at least 1 and at most interval_ms",
            );
        }
        if h.rise == 0 {
            return bad("health.rise", "must be at least 1");
        }
        if h.fall == 0 {
            return bad("health.fall", "must be at least 1");
        }
        if !h.http_path.starts_with('/') || h.http_path.contains(['\r', '\n', ' ']) {
            return bad(
                "health.http_path",
                "must start with `/` and contain no spaces or line breaks",
            );
        }
        if !(100..=599).contains(&h.http_expect_status) {
            return bad("health.http_expect_status", "must be within 100..=599");
        }
        if self.drain.prepend_secs > 3600 {
            return bad("drain.prepend_secs", "must be at most 3600");
        }
        if !(1..=10).contains(&self.drain.prepend_count) {
            return bad("drain.prepend_count", "must be within 1..=10");
        }
        if self.drain.period_secs > 3600 {
            return bad("drain.period_secs", "must be at most 3600");
        }
        Ok(())
    }
}

/// Parses `ADDR/LEN` (or `ADDR`, meaning a host prefix of `host_len`).
fn parse_prefix(text: &str, host_len: u8) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (
            a,
            l.parse::<u8>()
                .map_err(|_| format!("`{text}`: bad prefix length"))?,
        ),
        None => (text, host_len),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}`: not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("`{text}`: prefix length above {max}"));
    }
    Ok((addr, len))
}

/// Parses an aggregate prefix `ADDR/LEN` (no host bits set).
pub fn parse_aggregate(text: &str) -> Result<edgelb_bgp::IpNet, String> {
    let net: edgelb_bgp::IpNet = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a prefix ADDR/LEN"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a standard community `ASN:value` into its 32-bit form.
pub fn parse_community(text: &str) -> Option<u32> {
    let (hi, lo) = text.split_once(':')?;
    let hi: u16 = hi.trim().parse().ok()?;
    let lo: u16 = lo.trim().parse().ok()?;
    Some((u32::from(hi) << 16) | u32::from(lo))
}

/// Reads a secret or token file: trimmed, at least 16 bytes.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let raw = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let trimmed = raw.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            field: "(file contents)".into(),
            message: "a secret must be at least 16 bytes".into(),
        });
    }
    Ok(trimmed)
}
