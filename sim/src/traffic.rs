//! Client traffic for the scenarios: long-lived TCP connections that keep
//! talking (and notice when they break or change backend), and UDP flows.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Spawns `f` on a thread inside network namespace `ns_name`.
pub fn spawn_in_namespace<T: Send + 'static>(
    ns_name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<anyhow::Result<T>> {
    let path = format!("/run/netns/{ns_name}");
    std::thread::spawn(move || {
        testbed::namespace::enter_current_thread(&path)
            .map_err(|e| anyhow::anyhow!("setns {path}: {e}"))?;
        Ok(f())
    })
}

/// What happened to one long-lived connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOutcome {
    /// The backend that answered first.
    pub backend: Option<String>,
    /// Round trips that succeeded.
    pub round_trips: u64,
    /// Why it broke, if it did (error, or a different backend answered).
    pub broken: Option<String>,
    /// When it was last seen working: connected, or its last round trip
    /// answered. A broken connection broke after this (scenarios with
    /// steps attribute it to the step running then: a stall is only
    /// noticed at the read timeout, possibly steps later).
    pub last_ok: Option<Instant>,
}

/// Long-lived TCP connections held open and exercised until stopped.
pub struct LongLived {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<anyhow::Result<Vec<ConnectionOutcome>>>>>,
    /// Live count of round trips over all connections (progress indicator).
    pub progress: Arc<Mutex<u64>>,
}

impl LongLived {
    /// Opens `count` connections to `vip` from namespace `ns`, then sends one
    /// line on each connection every `period` until [`LongLived::finish`].
    pub fn start(ns: &str, vip: SocketAddr, count: usize, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(0u64));
        let (stop2, progress2) = (stop.clone(), progress.clone());
        let handle = spawn_in_namespace(ns, move || {
            crate::pinning::pin_to_sim_cpu()?;
            Ok::<_, anyhow::Error>(exercise(vip, count, period, &stop2, &progress2))
        });
        Self {
            stop,
            handle: Some(handle),
            progress,
        }
    }

    /// Stops and returns each connection's outcome.
    pub fn finish(mut self) -> anyhow::Result<Vec<ConnectionOutcome>> {
        self.stop.store(true, Ordering::SeqCst);
        let h = self
            .handle
            .take()
            .ok_or_else(|| anyhow::anyhow!("already finished"))?;
        h.join()
            .map_err(|_| anyhow::anyhow!("traffic thread panicked"))??
    }

    /// Round trips so far.
    pub fn round_trips(&self) -> u64 {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    outcome: ConnectionOutcome,
}

fn exercise(
    vip: SocketAddr,
    count: usize,
    period: Duration,
    stop: &AtomicBool,
    progress: &Mutex<u64>,
) -> Vec<ConnectionOutcome> {
    let mut conns: Vec<Conn> = Vec::new();
    let mut failed = Vec::new();
    for _ in 0..count {
        match TcpStream::connect_timeout(&vip, Duration::from_secs(3)) {
            Ok(s) => {
                // Long enough for TCP to ride out a router re-converging
                // (retransmissions): only real breaks count.
                let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
                let _ = s.set_nodelay(true);
                match s.try_clone() {
                    Ok(r) => conns.push(Conn {
                        stream: s,
                        reader: BufReader::new(r),
                        outcome: ConnectionOutcome {
                            backend: None,
                            round_trips: 0,
                            broken: None,
                            last_ok: Some(Instant::now()),
                        },
                    }),
                    Err(e) => failed.push(ConnectionOutcome {
                        backend: None,
                        round_trips: 0,
                        broken: Some(e.to_string()),
                        last_ok: None,
                    }),
                }
            }
            Err(e) => failed.push(ConnectionOutcome {
                backend: None,
                round_trips: 0,
                broken: Some(format!("connect: {e}")),
                last_ok: None,
            }),
        }
    }
    // Bounded: at most an hour, whatever the caller does.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let round = Instant::now();
        for c in conns.iter_mut().filter(|c| c.outcome.broken.is_none()) {
            line.clear();
            let sent = writeln!(c.stream, "ping {}", c.outcome.round_trips);
            let result =
                sent.map_err(|e| e.to_string())
                    .and_then(|_| match c.reader.read_line(&mut line) {
                        Ok(0) => Err("connection closed".to_owned()),
                        Ok(_) => Ok(line.split_whitespace().next().unwrap_or("").to_owned()),
                        Err(e) => Err(e.to_string()),
                    });
            match result {
                Ok(name) => match &c.outcome.backend {
                    None => {
                        c.outcome.backend = Some(name);
                        c.outcome.last_ok = Some(Instant::now());
                    }
                    Some(first) if *first != name => {
                        c.outcome.broken = Some(format!("moved from {first} to {name}"));
                    }
                    Some(_) => {
                        c.outcome.last_ok = Some(Instant::now());
                        c.outcome.round_trips += 1;
                        *progress.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                },
                Err(e) => c.outcome.broken = Some(e),
            }
        }
        if let Some(rest) = period.checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    conns.into_iter().map(|c| c.outcome).chain(failed).collect()
}

/// Sends one UDP query on each of `flows` fresh sockets (distinct source
/// ports) and counts answers per backend.
pub fn udp_spread(
    ns: &str,
    vip: SocketAddr,
    flows: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let handle = spawn_in_namespace(ns, move || -> anyhow::Result<BTreeMap<String, usize>> {
        crate::pinning::pin_to_sim_cpu()?;
        let mut seen = BTreeMap::new();
        for k in 0..flows {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send_to(format!("q{k}").as_bytes(), vip)?;
            let mut buf = [0u8; 256];
            let name = match s.recv_from(&mut buf) {
                Ok((n, from)) if from == vip => String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                Ok((_, from)) => format!("(answer from {from})"),
                Err(_) => "(no answer)".to_owned(),
            };
            *seen.entry(name).or_insert(0) += 1;
        }
        Ok(seen)
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("udp thread panicked"))??
}

/// Opens `count` short TCP connections (one round trip each) and counts the
/// backends that answered.
pub fn tcp_spread(
    ns: &str,
    vip: SocketAddr,
    count: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let handle = spawn_in_namespace(ns, move || -> anyhow::Result<BTreeMap<String, usize>> {
        crate::pinning::pin_to_sim_cpu()?;
        let mut seen = BTreeMap::new();
        for k in 0..count {
            let name = (|| -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                writeln!(s, "hello {k}")?;
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line)?;
                Ok(line.split_whitespace().next().unwrap_or("").to_owned())
            })()
            .unwrap_or_else(|e| format!("(failed: {})", e.kind()));
            *seen.entry(name).or_insert(0) += 1;
        }
        Ok(seen)
    });
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("tcp thread panicked"))??
}
