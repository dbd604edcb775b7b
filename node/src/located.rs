//! Errors located in a TOML file, shown as `FILE:LINE: FIELD: MESSAGE`
//! (`f.toml:31: vips[1].backends[0].weight: 0 is not in 1..=65535`): the
//! one implementation both the node configuration and the desired-state
//! file use, for what the parser refuses and for what validation refuses
//! afterwards.

use std::{fmt::Write as _, path::PathBuf};

use serde::de::DeserializeOwned;

/// A TOML file that cannot be used. Shown as `FILE:LINE: FIELD: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// Field path, e.g. `vips[2].backends[0].weight` (empty for a syntax
    /// error outside any field).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LocatedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LocatedError {}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The field path as the file spells it, without the parser's internal
/// segments (the wrappers that record spans).
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } if key.starts_with("$__") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Deserializes `text`; an error carries the line and the field path.
/// `path` only names the file in errors.
pub fn deserialize<T: DeserializeOwned>(
    text: &str,
    path: &std::path::Path,
) -> Result<T, LocatedError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        LocatedError {
            path: path.to_owned(),
            line: inner.span().map(|s| line_of(text, s.start)),
            field,
            message: inner.message().trim_end().to_owned(),
        }
    })
}

/// The line of the value at `field` (a path such as `bgp.peers[1].port`)
/// in `text`, for an error found after parsing; when the file does not
/// spell that field out (a default), the line of its closest enclosing
/// value or table that it does. `None` for a file that does not parse.
pub fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = document.as_item();
    let mut line = None;
    for segment in field_segments(field) {
        let next = match segment {
            Segment::Key(key) => item.get(key),
            Segment::Index(index) => item.get(index),
        };
        let Some(next) = next else { break };
        item = next;
        if let Some(span) = item.span() {
            line = Some(line_of(text, span.start));
        }
    }
    line
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` as `a`, `b`, `2`, `c` (keys hold no dots or brackets in the
/// files this reads).
fn field_segments(field: &str) -> impl Iterator<Item = Segment<'_>> {
    field.split('.').flat_map(|part| {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        let indices = rest
            .split('[')
            .filter_map(|i| i.trim_end_matches(']').parse().ok())
            .map(Segment::Index);
        (!key.is_empty())
            .then_some(Segment::Key(key))
            .into_iter()
            .chain(indices)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[node]\nid = 0\n\n[bgp]\nlocal_asn = 1\n[[bgp.peers]]\naddress = \"10.0.0.1\"\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nport = 0\n[cluster]\nmembers = [\n  { id = 1 },\n  { id = 1 },\n]\n";

    #[test]
    fn a_field_is_found_on_its_line() {
        assert_eq!(line_of_field(TEXT, "node.id"), Some(2));
        assert_eq!(line_of_field(TEXT, "bgp.local_asn"), Some(5));
        assert_eq!(line_of_field(TEXT, "bgp.peers[1].port"), Some(10));
        assert_eq!(line_of_field(TEXT, "cluster.members[1].id"), Some(14));
    }

    #[test]
    fn a_default_field_points_at_its_enclosing_value() {
        // `bgp.peers[0].port` is not written: the peer's table is.
        let line = line_of_field(TEXT, "bgp.peers[0].port").expect("a line");
        assert!((6..=7).contains(&line), "{line}");
        assert_eq!(line_of_field(TEXT, "nothing.here"), None);
        assert_eq!(line_of_field("not toml [", "node.id"), None);
    }

    #[test]
    fn errors_show_file_line_field_message() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct Node {
            id: u64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            node: Node,
        }
        let e = deserialize::<File>("[node]\nid = \"x\"\n", std::path::Path::new("f.toml"))
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field, "node.id");
        assert!(e.to_string().starts_with("f.toml:2: node.id: "), "{e}");
    }
}
