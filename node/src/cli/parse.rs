//! Parsing of the operator-facing notations `lbctl` accepts.

use std::net::{IpAddr, SocketAddr};

use edgelb_consensus::{Protocol, VipKey};

/// Parses a VIP: `ADDR:PORT/PROTO`, `[V6]:PORT/PROTO`, or `ADDR/PROTO` for
/// all ports (port 0). PROTO is `tcp` or `udp`.
pub fn vip_key(text: &str) -> Result<VipKey, String> {
    let (addr_port, proto) = text
        .rsplit_once('/')
        .ok_or_else(|| format!("`{text}`: expected ADDR:PORT/tcp or ADDR:PORT/udp"))?;
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("`{text}`: protocol `{other}` is not tcp or udp")),
    };
    let (address, port) = if let Ok(sa) = addr_port.parse::<SocketAddr>() {
        (sa.ip(), sa.port())
    } else if let Ok(ip) = addr_port
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        (ip, 0)
    } else {
        return Err(format!(
            "`{text}`: `{addr_port}` is not ADDR, ADDR:PORT or [V6]:PORT"
        ));
    };
    Ok(VipKey {
        address,
        port,
        protocol,
    })
}

/// Parses `ADDR:PORT` or `[V6]:PORT`.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not ADDR:PORT or [V6]:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_notations() {
        let k = vip_key("198.18.0.10:80/tcp").unwrap();
        assert_eq!(
            (k.address.to_string(), k.port, k.protocol),
            ("198.18.0.10".into(), 80, Protocol::Tcp)
        );
        let k = vip_key("[2001:db8::1]:53/UDP").unwrap();
        assert_eq!(
            (k.address.to_string(), k.port, k.protocol),
            ("2001:db8::1".into(), 53, Protocol::Udp)
        );
        assert_eq!(vip_key("198.18.0.10/udp").unwrap().port, 0);
        assert_eq!(vip_key("2001:db8::1/tcp").unwrap().port, 0);
        for bad in [
            "198.18.0.10:80",
            "198.18.0.10:80/sctp",
            "hello/tcp",
            "1.2.3.4:99999/tcp",
            "",
        ] {
            assert!(vip_key(bad).is_err(), "{bad}");
        }
    }
}
