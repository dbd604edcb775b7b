//! A UDP load generator: small datagrams over many flows (one connected
//! socket per flow, so each flow has its own source port), sent in batches
//! with `sendmmsg` for as long as asked.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

/// Payload bytes per datagram: with IPv4 and UDP headers a 46-byte packet,
/// a minimum-size Ethernet frame.
pub const PAYLOAD: usize = 18;

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 32;

/// Sends to `target` from `flows` sockets in the calling thread's namespace
/// for `duration`; returns the datagrams the kernel accepted.
pub fn flood(target: SocketAddr, flows: usize, duration: Duration) -> std::io::Result<u64> {
    let sockets = (0..flows.max(1))
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(target)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let payload = [0x5au8; PAYLOAD];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: PAYLOAD,
    };
    // SAFETY: mmsghdr is plain data; every field used is set below.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_iov = &mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0u64;
    let start = Instant::now();
    'outer: loop {
        for s in &sockets {
            // SAFETY: msgs points at BATCH initialised headers whose single
            // iovec points at `payload`, all alive for the call; the socket
            // is connected, so no address is needed.
            let n = unsafe {
                libc::sendmmsg(
                    s.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            // Full queues (EAGAIN, ENOBUFS) are the point of a flood: skip.
            if n > 0 {
                sent += n as u64;
            }
            if start.elapsed() >= duration {
                break 'outer;
            }
        }
    }
    Ok(sent)
}
