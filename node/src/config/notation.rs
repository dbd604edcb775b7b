//! The textual notations of the configuration file: address prefixes
//! (`ADDR/LEN`) and BGP communities (`ASN:value`).

use std::net::IpAddr;

/// Parses `ADDR/LEN` (or `ADDR`, meaning a host prefix of `host_len`).
pub(super) fn parse_prefix(text: &str, host_len: u8) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (
            a,
            l.parse::<u8>()
                .map_err(|_| format!("`{text}`: bad prefix length"))?,
        ),
        None => (text, host_len),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}`: not an address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("`{text}`: prefix length above {max}"));
    }
    Ok((addr, len))
}

/// Parses an aggregate prefix `ADDR/LEN` (no host bits set).
pub fn parse_aggregate(text: &str) -> Result<edgelb_bgp::IpNet, String> {
    let net: edgelb_bgp::IpNet = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a prefix ADDR/LEN"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses a standard community `ASN:value` into its 32-bit form.
pub fn parse_community(text: &str) -> Option<u32> {
    let (hi, lo) = text.split_once(':')?;
    let hi: u16 = hi.trim().parse().ok()?;
    let lo: u16 = lo.trim().parse().ok()?;
    Some((u32::from(hi) << 16) | u32::from(lo))
}
