//! Property tests over random and mutated TOML text on the configuration
//! loader: `Config::parse` returns a valid configuration or an error naming
//! the file, never panics, and a configuration it accepts keeps the promises
//! its validation makes (every accessor the daemon calls works). The seed is
//! the shipped example, deploy/lbnode.example.toml. Bounded by the case
//! count: PROPTEST_CASES, default 2048 in the plain test run; CI's
//! scripts/test.sh runs it again with a million cases per property.

use std::path::Path;
use std::sync::OnceLock;

use edgelb_node::config::{parse_aggregate, parse_community, Config, ConfigError};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../deploy/lbnode.example.toml");
const PATH: &str = "fuzz.toml";

/// The example without comments and blank lines: the same settings in half
/// the text, so a case costs half the parsing.
fn seed() -> &'static [String] {
    static SEED: OnceLock<Vec<String>> = OnceLock::new();
    SEED.get_or_init(|| {
        EXAMPLE
            .lines()
            .map(|l| l.split(" #").next().unwrap_or(l).trim_end())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    })
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
            if let ConfigError::Invalid { field, message, .. } = &e {
                prop_assert!(!field.is_empty() && !message.is_empty(), "{}", e);
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
            // Accepting a text is deterministic.
            prop_assert_eq!(Config::parse(text, Path::new(PATH)).ok(), Some(c));
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random text, from TOML's own characters most of the time.
    #[test]
    fn random_text_parses_or_fails_cleanly(
        text in proptest::string::string_regex("[\\[\\]{}=\".,:#a-z_0-9 \\n\\t'-]{0,200}|\\PC{0,100}").unwrap(),
    ) {
        check(&text)?;
    }

    /// The shipped example with values swapped for edge values, lines
    /// deleted, repeated or moved, bytes overwritten.
    #[test]
    fn mutated_example_parses_or_fails_cleanly(edits in proptest::collection::vec(edit(), 1..5)) {
        check(&apply(&edits))?;
    }
}

/// The seed the mutations start from is itself a valid configuration.
#[test]
fn seed_is_valid() {
    check(&seed().join("\n")).unwrap();
    assert!(Config::parse(&seed().join("\n"), Path::new(PATH)).is_ok());
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
