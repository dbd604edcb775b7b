//! The daemon's TOML configuration file.
//!
//! Every field is documented in `sections.rs`; unknown fields are rejected
//! so a typo never silently falls back to a default. Validation errors name
//! the field (`validate.rs`); the textual notations the file uses (prefixes,
//! communities) are parsed in `notation.rs`.

mod notation;
mod sections;
mod validate;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use self::notation::parse_prefix;
pub use self::{
    notation::{parse_aggregate, parse_community},
    sections::{
        AdminSection, BgpPeerConfig, BgpSection, ClusterSection, DrainSection,
        FloodThresholdSetting, HealthKind, HealthSection, HttpSection, LogFormat, LogSection,
        MemberConfig, MetricsSection, NodeSection, XdpAttachMode, XdpSection,
    },
};
use crate::located::{self, LocatedError};

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
    /// The file is not valid TOML for this schema (unknown field, wrong
    /// type...): `FILE:LINE: FIELD: MESSAGE`.
    #[error("{0}")]
    Parse(LocatedError),
    /// A field has a value outside what it allows: `FILE:LINE: FIELD:
    /// MESSAGE`, the line that of the field (or, for a default, of its
    /// section).
    #[error("{0}")]
    Invalid(LocatedError),
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
    /// The JSON HTTP API (off unless `http.listen` is set).
    #[serde(default)]
    pub http: HttpSection,
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
        let config: Config = located::deserialize(text, path).map_err(ConfigError::Parse)?;
        config.validate().map_err(|(field, message)| {
            ConfigError::Invalid(LocatedError {
                path: path.to_owned(),
                line: located::line_of_field(text, &field),
                field,
                message,
            })
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
}

/// Reads a secret or token file: trimmed, at least 16 bytes.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let raw = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let trimmed = raw.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        return Err(ConfigError::Invalid(LocatedError {
            path: path.to_owned(),
            line: None,
            field: "(file contents)".into(),
            message: "a secret must be at least 16 bytes".into(),
        }));
    }
    Ok(trimmed)
}
