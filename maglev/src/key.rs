//! How a backend is named to the hash: [`BackendKey`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Something that names a backend: its canonical bytes decide the backend's
/// place in every Maglev table, so they must be the same on every node.
///
/// The encoding is part of the table format: changing it for a type moves
/// backends in every table built from that type. The encodings given here are:
///
/// | type | bytes |
/// |---|---|
/// | `[u8]`, `Vec<u8>`, `[u8; N]` | the bytes themselves |
/// | `str`, `String` | the UTF-8 bytes |
/// | `u16`, `u32`, `u64`, `u128` | big-endian |
/// | `Ipv4Addr` | `4`, then the 4 octets |
/// | `Ipv6Addr` | `6`, then the 16 octets |
/// | `IpAddr` | as the inner address |
/// | `SocketAddrV4`, `SocketAddrV6`, `SocketAddr` | as the IP, then the port big-endian |
///
/// The family tag keeps `10.0.0.1` and `::ffff:10.0.0.1` distinct. A
/// `SocketAddrV6`'s flow info and scope id are not part of its key.
pub trait BackendKey {
    /// Appends the canonical bytes of `self` to `out`.
    fn write_key(&self, out: &mut Vec<u8>);

    /// The canonical bytes of `self`.
    fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_key(&mut out);
        out
    }
}

impl<T: BackendKey + ?Sized> BackendKey for &T {
    fn write_key(&self, out: &mut Vec<u8>) {
        (**self).write_key(out)
    }
}

impl BackendKey for [u8] {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

impl<const N: usize> BackendKey for [u8; N] {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

impl BackendKey for Vec<u8> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self)
    }
}

impl BackendKey for str {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}

impl BackendKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes())
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl BackendKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes())
            }
        }
    )*};
}
int_key!(u16, u32, u64, u128);

impl BackendKey for Ipv4Addr {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.push(4);
        out.extend_from_slice(&self.octets())
    }
}

impl BackendKey for Ipv6Addr {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.push(6);
        out.extend_from_slice(&self.octets())
    }
}

impl BackendKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            IpAddr::V4(a) => a.write_key(out),
            IpAddr::V6(a) => a.write_key(out),
        }
    }
}

impl BackendKey for SocketAddrV4 {
    fn write_key(&self, out: &mut Vec<u8>) {
        self.ip().write_key(out);
        out.extend_from_slice(&self.port().to_be_bytes())
    }
}

impl BackendKey for SocketAddrV6 {
    fn write_key(&self, out: &mut Vec<u8>) {
        self.ip().write_key(out);
        out.extend_from_slice(&self.port().to_be_bytes())
    }
}

impl BackendKey for SocketAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            SocketAddr::V4(a) => a.write_key(out),
            SocketAddr::V6(a) => a.write_key(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_as_documented() {
        assert_eq!("ab".key_bytes(), b"ab");
        assert_eq!(String::from("ab").key_bytes(), b"ab");
        assert_eq!([1u8, 2].key_bytes(), [1, 2]);
        assert_eq!(vec![1u8, 2].key_bytes(), [1, 2]);
        assert_eq!(b"xy"[..].key_bytes(), b"xy");
        assert_eq!(0x0102u16.key_bytes(), [1, 2]);
        assert_eq!(0x0102_0304u32.key_bytes(), [1, 2, 3, 4]);
        assert_eq!(1u64.key_bytes(), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(1u128.key_bytes().len(), 16);
        let v4: Ipv4Addr = "10.0.0.1".parse().unwrap();
        assert_eq!(v4.key_bytes(), [4, 10, 0, 0, 1]);
        assert_eq!(IpAddr::V4(v4).key_bytes(), [4, 10, 0, 0, 1]);
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut want = vec![6];
        want.extend_from_slice(&v6.octets());
        assert_eq!(IpAddr::V6(v6).key_bytes(), want);
        let sa: SocketAddr = "10.0.0.1:443".parse().unwrap();
        assert_eq!(sa.key_bytes(), [4, 10, 0, 0, 1, 1, 187]);
        let sa6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        want.extend_from_slice(&[0, 80]);
        assert_eq!(sa6.key_bytes(), want);
        assert_eq!((&&sa).key_bytes(), sa.key_bytes());
    }

    #[test]
    fn v4_and_v4_mapped_v6_differ() {
        let v4: Ipv4Addr = "10.0.0.1".parse().unwrap();
        assert_ne!(
            IpAddr::V4(v4).key_bytes(),
            IpAddr::V6(v4.to_ipv6_mapped()).key_bytes()
        );
    }

    #[test]
    fn v6_scope_and_flowinfo_are_ignored() {
        let ip: Ipv6Addr = "fe80::1".parse().unwrap();
        let a = SocketAddrV6::new(ip, 80, 0, 0);
        let b = SocketAddrV6::new(ip, 80, 7, 3);
        assert_eq!(a.key_bytes(), b.key_bytes());
    }
}
