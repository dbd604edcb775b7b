//! The sections of the configuration file, one struct each, with every
//! field's meaning and default.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use serde::Deserialize;

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

/// `[http]`: the JSON HTTP API for automation (see `deploy/openapi.json`).
/// Off unless `listen` is set: it takes the admin token, so where it
/// listens is the operator's choice, as for `[admin]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address serving the API, e.g. `127.0.0.1:7200`; omit to disable.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Largest request body accepted, in bytes (default 1 MiB, a batch of
    /// several thousand entries; at most the admin protocol's 8 MiB frame).
    /// A larger body is refused with 413 before it is read.
    #[serde(default = "defaults::http_max_body_bytes")]
    pub max_body_bytes: u32,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: defaults::http_max_body_bytes(),
        }
    }
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
    /// New flows per second per CPU above which the connection cache stops
    /// evicting established connections for new flows (cache admission
    /// under flood): a number, `"auto"` (sized from `conn_table_size`: the
    /// rate that turns the cache over in 10 s) or `"off"`.
    #[serde(default)]
    pub flood_threshold: FloodThresholdSetting,
}

/// `xdp.flood_threshold` as written: a number or a word (checked by
/// validation, so a negative or absurd number gets an error naming the
/// field instead of a type error).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FloodThresholdSetting {
    /// New flows per second per CPU.
    PerSecond(i64),
    /// `"auto"` or `"off"`.
    Word(String),
}

impl Default for FloodThresholdSetting {
    fn default() -> Self {
        FloodThresholdSetting::Word("auto".into())
    }
}

impl FloodThresholdSetting {
    /// The forwarder's threshold, or why the setting is not one.
    pub fn threshold(&self) -> Result<xdp_fwd::FloodThreshold, String> {
        match self {
            FloodThresholdSetting::Word(w) if w == "auto" => {
                Ok(xdp_fwd::FloodThreshold::FromCapacity)
            }
            FloodThresholdSetting::Word(w) if w == "off" => Ok(xdp_fwd::FloodThreshold::Off),
            FloodThresholdSetting::Word(w) => Err(format!(
                "`{w}` is not a number of new flows per second, \"auto\" or \"off\""
            )),
            FloodThresholdSetting::PerSecond(n) => u64::try_from(*n)
                .ok()
                .and_then(|n| xdp_fwd::check_flood_rate(n).ok())
                .map(xdp_fwd::FloodThreshold::PerSecond)
                .ok_or_else(|| {
                    format!(
                        "{n}: must be within 1..={} new flows per second per CPU",
                        xdp_fwd::common::flood::MAX_FLOOD_RATE
                    )
                }),
        }
    }
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
    pub fn http_max_body_bytes() -> u32 {
        1 << 20
    }
}
