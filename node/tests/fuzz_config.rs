//! Property tests over random and mutated TOML text on the configuration
//! loader: `Config::parse` returns a valid configuration or an error naming
//! the file, never panics, and a configuration it accepts keeps the promises
//! its validation makes (every accessor the daemon calls works). The seed is
//! the shipped example's settings, deploy/lbnode.example.toml. Bounded by the case
//! count: PROPTEST_CASES, default 2048 in the plain test run; CI's
//! scripts/test.sh runs it again with a million cases per property.

use std::path::Path;
use std::sync::OnceLock;

use edgelb_node::config::{parse_aggregate, parse_community, Config, ConfigError};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../deploy/lbnode.example.toml");
const PATH: &str = "fuzz.toml";

/// The example's settings in about half its text (no comments, defaults
/// left out, one member per line; every section and every kind of value is
/// still there): toml's parser dominates a case, and its cost follows the
/// text's length, so this is what lets a million cases fit CI's budget.
/// `seed_matches_the_example` keeps it in step with the example.
const SEED: &str = r#"[node]
id = 1
data_dir = "/var/lib/edgelb"
[cluster]
listen = "10.0.0.1:7000"
secret_file = "/etc/edgelb/cluster.secret"
election_timeout_ms = 1000
heartbeat_ms = 250
initial_members = [{ id = 1, addr = "10.0.0.1:7000", admin = "10.0.0.1:7100" }, { id = 2, addr = "10.0.0.2:7000" }]
[admin]
listen = "10.0.0.1:7100"
token_file = "/etc/edgelb/admin.token"
[metrics]
listen = "0.0.0.0:9100"
[log]
format = "plain"
[xdp]
interfaces = ["eth0"]
mode = "driver"
encap_source_v4 = "172.16.0.0/16"
encap_source_v6 = "fd00::/96"
conn_table_size = 1048576
[bgp]
local_asn = 65001
router_id = "10.0.0.1"
communities = ["65001:100"]
as_path_prepend = 0
aggregates = ["192.0.2.0/24"]
graceful_restart_secs = 30
[[bgp.peers]]
address = "10.0.0.254"
remote_asn = 65000
hold_time_secs = 9
[health]
kind = "http"
http_path = "/healthz"
interval_ms = 1000
timeout_ms = 500
[drain]
prepend_secs = 5
prepend_count = 3"#;

fn seed() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| SEED.lines().map(str::to_owned).collect())
}

/// Values that sit on or across the edges of what the fields accept.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "10",
    "11",
    "49",
    "50",
    "65535",
    "65536",
    "23456",
    "4096",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "nan",
    "inf",
    "1e400",
    "true",
    "\"\"",
    "\"x\"",
    "\"/\"",
    "\"eth0/1\"",
    "\"0123456789abcdef\"",
    "\"0.0.0.0:0\"",
    "\"[::]:7000\"",
    "\"10.0.0.1\"",
    "\"10.0.0.1/33\"",
    "\"10.0.0.1/\"",
    "\"fd00::/95\"",
    "\"fd00::/129\"",
    "\"::/0\"",
    "\"192.0.2.1/24\"",
    "\"65536:1\"",
    "\":\"",
    "\"/h h\"",
    "[]",
    "[\"\"]",
    "[1, \"a\"]",
    "{}",
    "[[[[1]]]]",
    "1979-05-27T07:32:00Z",
];

/// One edit of the configuration's lines.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the value of line `line` (after its `=`) with `VALUES[value]`.
    Value { line: usize, value: usize },
    /// Remove a line.
    Delete { line: usize },
    /// Repeat a line.
    Duplicate { line: usize },
    /// Move a line elsewhere (into another section).
    Move { from: usize, to: usize },
    /// Overwrite one byte of a line.
    Byte { line: usize, pos: usize, byte: u8 },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0..VALUES.len()).prop_map(|(line, value)| Edit::Value { line, value }),
        1 => any::<usize>().prop_map(|line| Edit::Delete { line }),
        1 => any::<usize>().prop_map(|line| Edit::Duplicate { line }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Edit::Move { from, to }),
        2 => (any::<usize>(), any::<usize>(), any::<u8>())
            .prop_map(|(line, pos, byte)| Edit::Byte { line, pos, byte }),
    ]
}

fn apply(edits: &[Edit]) -> String {
    let mut lines: Vec<String> = seed().to_vec();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match *e {
            Edit::Value { line, value } => {
                let l = &mut lines[line % n];
                if let Some(eq) = l.find('=') {
                    l.truncate(eq + 1);
                    l.push(' ');
                    l.push_str(VALUES[value]);
                }
            }
            Edit::Delete { line } => {
                lines.remove(line % n);
            }
            Edit::Duplicate { line } => {
                let l = lines[line % n].clone();
                lines.insert(line % n, l);
            }
            Edit::Move { from, to } => {
                let l = lines.remove(from % n);
                lines.insert(to % n, l);
            }
            Edit::Byte { line, pos, byte } => {
                let mut bytes = std::mem::take(&mut lines[line % n]).into_bytes();
                let i = pos % (bytes.len() + 1);
                if i < bytes.len() {
                    bytes[i] = byte;
                } else {
                    bytes.push(byte);
                }
                lines[line % n] = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    lines.join("\n")
}

/// Parses `text`: an error names the file (and, for a bad value, the field);
/// an accepted configuration satisfies what validation promised.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, Path::new(PATH)) {
        Err(e) => {
            prop_assert!(e.to_string().starts_with(PATH), "{}", e);
            if let ConfigError::Invalid(invalid) = &e {
                prop_assert!(
                    !invalid.field.is_empty() && !invalid.message.is_empty(),
                    "{}",
                    e
                );
            }
        }
        Ok(c) => {
            prop_assert!(c.node.id >= 1);
            prop_assert!(c.encap_source_v4().is_ok());
            prop_assert!(c.encap_source_v6().is_ok());
            prop_assert!(c.election_timeout_max() >= c.quorum_ack_bound());
            prop_assert!(c.cluster.heartbeat_ms * 2 <= c.cluster.election_timeout_ms);
            prop_assert!(!c.xdp.interfaces.is_empty() && !c.bgp.peers.is_empty());
            prop_assert!(c
                .bgp
                .communities
                .iter()
                .all(|x| parse_community(x).is_some()));
            prop_assert!(c.bgp.aggregates.iter().all(|x| parse_aggregate(x).is_ok()));
            prop_assert!(c.health.timeout_ms <= c.health.interval_ms);
            let _ = (
                c.admin_advertise_addr(),
                c.advertise_addr(),
                c.drain_period(),
            );
        }
    }
    Ok(())
}

/// Random bytes made mostly into TOML's own characters (cheaper to draw
/// than a regex strategy): an even byte picks from the alphabet, an odd one
/// stays itself, so invalid UTF-8 and control bytes still appear.
fn toml_noise(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"[]{}=\".,:#'-_ \n\tabcdefnortuxz0123456789";
    let mapped: Vec<u8> = bytes
        .iter()
        .map(|&b| {
            if b.is_multiple_of(2) {
                ALPHABET[usize::from(b / 2) % ALPHABET.len()]
            } else {
                b
            }
        })
        .collect();
    String::from_utf8_lossy(&mapped).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: testbed::fuzz::cases(), ..ProptestConfig::default() })]

    /// Random text, from TOML's own characters most of the time.
    #[test]
    fn random_text_parses_or_fails_cleanly(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        check(&toml_noise(&bytes))?;
    }

    /// The shipped example with values swapped for edge values, lines
    /// deleted, repeated or moved, bytes overwritten.
    #[test]
    fn mutated_example_parses_or_fails_cleanly(edits in proptest::collection::vec(edit(), 1..5)) {
        check(&apply(&edits))?;
    }
}

/// The seed the mutations start from is a valid configuration, and every
/// setting it has is the shipped example's.
#[test]
fn seed_matches_the_example() {
    let seed = Config::parse(SEED, Path::new(PATH)).expect("the seed is valid");
    let example = Config::parse(EXAMPLE, Path::new(PATH)).expect("the example is valid");
    assert_eq!(seed.node, example.node);
    assert_eq!(seed.admin, example.admin);
    assert_eq!(seed.metrics, example.metrics);
    assert_eq!(seed.xdp, example.xdp);
    assert_eq!(seed.drain, example.drain);
    assert_eq!(seed.cluster.listen, example.cluster.listen);
    assert_eq!(seed.bgp.peers, example.bgp.peers);
    assert_eq!(seed.health.http_path, example.health.http_path);
}

/// Deeply nested arrays and inline tables are refused with an error, not a
/// stack overflow (the TOML parser bounds its recursion).
#[test]
fn fixture_deep_nesting_is_an_error() {
    for (open, close) in [("[", "]"), ("{a=", "}")] {
        let text = format!(
            "{}\nx = {}1{}",
            seed().join("\n"),
            open.repeat(100_000),
            close.repeat(100_000)
        );
        assert!(Config::parse(&text, Path::new(PATH)).is_err());
    }
}
