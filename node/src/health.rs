//! Backend health checks: TCP connect or HTTP GET, with rise/fall hysteresis.
//!
//! A node's verdicts are only observations: the daemon reports them through
//! Raft, and a backend changes state when a quorum of nodes agrees, so every
//! node keeps computing the same Maglev table.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

/// What one probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Healthy when a TCP connection is established.
    Tcp,
    /// Healthy when `GET path` is answered with status `expect_status`.
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// The status code that means healthy.
        expect_status: u16,
    },
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed (refused, unreachable, reset...).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The HTTP answer was not a valid status line.
    #[error("malformed HTTP response")]
    Malformed,
    /// The HTTP status was not the expected one.
    #[error("HTTP status {0}")]
    Status(u16),
}

/// Runs one probe against `target`, bounded by `limit` as a whole.
pub async fn probe(target: SocketAddr, kind: &Probe, limit: Duration) -> Result<(), ProbeError> {
    timeout(limit, probe_unbounded(target, kind))
        .await
        .map_err(|_| ProbeError::Timeout)?
}

async fn probe_unbounded(target: SocketAddr, kind: &Probe) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    match kind {
        Probe::Tcp => Ok(()),
        Probe::Http {
            path,
            expect_status,
        } => {
            let host = match target {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edgelb-health\r\nConnection: close\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| ProbeError::Connect(e.to_string()))?;
            let status = read_status(&mut stream).await?;
            if status == *expect_status {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        }
    }
}

/// Reads just enough of the response to parse `HTTP/1.x NNN`.
async fn read_status(stream: &mut TcpStream) -> Result<u16, ProbeError> {
    let mut buf = [0u8; 64];
    let mut len = 0;
    // The status line's first 12 bytes are all we need.
    while len < 12 {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    parse_status_line(&buf[..len]).ok_or(ProbeError::Malformed)
}

/// Parses the status code out of the start of an HTTP/1.x response.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") || head[8] != b' ' {
        return None;
    }
    let code = std::str::from_utf8(&head[9..12])
        .ok()?
        .parse::<u16>()
        .ok()?;
    (100..=599).contains(&code).then_some(code)
}

/// A target's health as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decided: fewer than `rise`/`fall` results so far.
    Unknown,
    /// Passed `rise` consecutive probes.
    Up,
    /// Failed `fall` consecutive probes.
    Down,
}

/// Rise/fall hysteresis over a stream of probe results.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    verdict: Verdict,
}

impl Hysteresis {
    /// A tracker needing `rise` successes to go up and `fall` failures to go
    /// down (both at least 1).
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
            verdict: Verdict::Unknown,
        }
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Records one probe result; returns the new verdict if it changed.
    pub fn record(&mut self, healthy: bool) -> Option<Verdict> {
        if healthy {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.rise && self.verdict != Verdict::Up {
                self.verdict = Verdict::Up;
                return Some(Verdict::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.fall && self.verdict != Verdict::Down {
                self.verdict = Verdict::Down;
                return Some(Verdict::Down);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_needs_rise_and_fall_in_a_row() {
        let mut h = Hysteresis::new(2, 3);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Verdict::Up));
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None, "a success resets the failure run");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(Verdict::Down));
        assert_eq!(h.record(false), None, "no repeated transition");
        assert_eq!(h.verdict(), Verdict::Down);
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Busy"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 999 what"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2x0 OK\r\n"), None);
    }
}
