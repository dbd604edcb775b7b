//! A TCP SYN flood: SYNs from random sources (addresses in 198.18.0.0/15,
//! the benchmarking range, and random ports) toward one address and port,
//! written to a raw IPv4 socket in `sendmmsg` batches as fast as the
//! calling thread can, for a bounded time.
//!
//! The replies (SYN-ACKs from the backends to the random sources) have no
//! route out of the sim: the router drops them, so everything stays in the
//! sim's namespaces.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use packet_builder::{tcp_flags, FrameBuilder, L4};

/// Distinct pre-built SYNs cycled through: each SYN is a new flow to the
/// forwarder however often its tuple recurs, and building them ahead keeps
/// the send loop to system calls.
const POOL: usize = 1 << 16;

/// SYNs per `sendmmsg` call.
const BATCH: usize = 64;

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodSent {
    /// SYNs the kernel accepted.
    pub syns: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl FloodSent {
    /// SYNs per second achieved.
    pub fn rate(&self) -> f64 {
        self.syns as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A small xorshift generator: random-looking sources, reproducible runs.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The IPv4 packets of [`POOL`] SYNs from random sources to `dst:port`.
fn syn_pool(dst: Ipv4Addr, port: u16) -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x5eed_f100d);
    (0..POOL)
        .map(|_| {
            let r = rng.next();
            // 198.18.0.0/15: 17 random host bits.
            let host = (r as u32) & 0x1_ffff;
            let src = Ipv4Addr::from(0xc612_0000 | host);
            let sport = 1024 + ((r >> 32) as u16 % 64000);
            FrameBuilder::new(
                IpAddr::V4(src),
                IpAddr::V4(dst),
                L4::Tcp {
                    sport,
                    dport: port,
                    flags: tcp_flags::SYN,
                },
            )
            .ip_packet()
        })
        .collect()
}

/// Floods `dst:port` with SYNs from the calling thread's namespace for
/// `duration` (queues that are full drop the excess: the point of a flood).
pub fn flood(dst: Ipv4Addr, port: u16, duration: Duration) -> std::io::Result<FloodSent> {
    let pool = syn_pool(dst, port);
    // SAFETY: plain socket(2) call; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // One iovec per pre-built packet, pointing into `pool` (alive below).
    let mut iovs: Vec<libc::iovec> = pool
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; every field used is set below.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while start.elapsed() < duration {
        for m in msgs.iter_mut() {
            m.msg_hdr.msg_name = &addr as *const libc::sockaddr_in as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = &mut iovs[next];
            m.msg_hdr.msg_iovlen = 1;
            next = (next + 1) % POOL;
        }
        // SAFETY: BATCH initialised headers, each naming `addr` and one
        // iovec of `pool`, all alive for the call.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent += n as u64;
        }
    }
    Ok(FloodSent {
        syns: sent,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_syns_from_the_benchmark_range() {
        let pool = syn_pool(Ipv4Addr::new(192, 0, 2, 10), 80);
        assert_eq!(pool.len(), POOL);
        let distinct: std::collections::BTreeSet<&[u8]> = pool.iter().map(|p| &p[12..24]).collect();
        assert!(distinct.len() > POOL * 9 / 10, "{}", distinct.len());
        for p in pool.iter().take(100) {
            assert_eq!(p[9], 6, "TCP");
            assert_eq!(p[12], 198);
            assert_eq!(p[13] & 0xfe, 18);
            assert_eq!(p[16..20], [192, 0, 2, 10]);
            assert_eq!(p[20 + 13], tcp_flags::SYN);
        }
    }
}
