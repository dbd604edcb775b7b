//! The simulation's backends: a namespace that decapsulates IPIP/GUE, holds
//! the VIPs on loopback and answers clients directly (DSR), and the small
//! service it runs.
//!
//! The service answers every TCP line and every UDP datagram with
//! `<backend name> <what was received>`, so a client can see which backend
//! served it and notice when a long-lived connection breaks.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use testbed::{Namespace, Result};

/// UDP port of GUE (generic UDP encapsulation, variant 1) on backends.
pub const GUE_PORT: u16 = 6080;

/// Prepares backend namespace `ns` for DSR: puts each VIP on loopback and
/// relaxes reverse-path filtering (replies leave by the default route, not
/// by the interface the encapsulated request came in on). Decapsulation
/// itself is done by the XDP decapsulator the backend service attaches
/// (see [`attach_decap`]), since this kernel has no IPIP/FOU devices.
pub fn prepare_backend(ns: &Namespace, vips: &[IpAddr]) -> Result<()> {
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
    ] {
        ns.sysctl(key, "0")?;
    }
    for vip in vips {
        let prefix = if vip.is_ipv4() {
            format!("{vip}/32")
        } else {
            format!("{vip}/128")
        };
        ns.ip(["addr", "add", &prefix, "dev", "lo"])?;
    }
    Ok(())
}

/// Loads the XDP decapsulator and attaches it to `interface` of the current
/// network namespace in driver mode; it stays attached while the returned
/// value lives.
pub fn attach_decap(interface: &str) -> anyhow::Result<xdp_decap::Decapper> {
    let mut decap = xdp_decap::Decapper::load(GUE_PORT)?;
    decap.attach(interface, aya::programs::XdpMode::Driver)?;
    Ok(decap)
}

/// Writes the decapsulator's counters to `path` as JSON (through a rename,
/// so a reader never sees half a file): what the sim reports per backend,
/// as backends run no daemon.
pub fn write_decap_stats(
    decap: &xdp_decap::Decapper,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let s = decap.stats()?;
    let json = serde_json::json!({
        "ipip": s.ipip,
        "gue": s.gue,
        "fragments": s.fragments,
        "second_hop_forwarded": s.second_hop_forwarded,
        "second_hop_delivered": s.second_hop_delivered,
        "second_hop_loop_refused": s.second_hop_loop_refused,
        "second_hop_invalid": s.second_hop_invalid,
        "second_hop_no_route": s.second_hop_no_route,
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Counters of a running [`Service`].
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// TCP connections accepted.
    pub tcp_connections: AtomicU64,
    /// TCP lines answered.
    pub tcp_lines: AtomicU64,
    /// UDP datagrams answered.
    pub udp_datagrams: AtomicU64,
}

/// The backend service: TCP line echo and UDP echo, each answer prefixed by
/// the backend's name. Runs on background threads until dropped.
pub struct Service {
    stop: Arc<AtomicBool>,
    stats: Arc<ServiceStats>,
    tcp_addr: SocketAddr,
    udp_addr: SocketAddr,
}

impl Service {
    /// Binds `tcp` and `udp` (port 0 picks one) and starts serving as `name`.
    pub fn start(name: &str, tcp: SocketAddr, udp: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(tcp)?;
        let socket = UdpSocket::bind(udp)?;
        // Wake up periodically to notice `stop`.
        listener.set_nonblocking(true)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ServiceStats::default());
        let (tcp_addr, udp_addr) = (listener.local_addr()?, socket.local_addr()?);
        {
            let (stop, stats, name) = (stop.clone(), stats.clone(), name.to_owned());
            thread::spawn(move || accept_loop(&listener, &name, &stop, &stats));
        }
        {
            let (stop, stats, name) = (stop.clone(), stats.clone(), name.to_owned());
            thread::spawn(move || udp_loop(&socket, &name, &stop, &stats));
        }
        Ok(Self {
            stop,
            stats,
            tcp_addr,
            udp_addr,
        })
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Live counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: &TcpListener,
    name: &str,
    stop: &Arc<AtomicBool>,
    stats: &Arc<ServiceStats>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
                let (name, stop, stats) = (name.to_owned(), stop.clone(), stats.clone());
                thread::spawn(move || serve_connection(stream, &name, &stop, &stats));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve_connection(stream: TcpStream, name: &str, stop: &AtomicBool, stats: &ServiceStats) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                let answer = format!("{name} {}\n", line.trim_end());
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                stats.tcp_lines.fetch_add(1, Ordering::Relaxed);
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn udp_loop(socket: &UdpSocket, name: &str, stop: &AtomicBool, stats: &ServiceStats) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mut answer = Vec::with_capacity(name.len() + 1 + n);
        answer.extend_from_slice(name.as_bytes());
        answer.push(b' ');
        answer.extend_from_slice(&buf[..n]);
        if socket.send_to(&answer, peer).is_ok() {
            stats.udp_datagrams.fetch_add(1, Ordering::Relaxed);
        }
    }
}
