//! The VIP address filter (VIP_FILTER): one bit per hash of each address
//! carrying a VIP, so the program passes most traffic that is not for a VIP
//! after one array read. The bit of an address is set before a VIP on it is
//! written and cleared only after its last VIP is removed: the filter never
//! hides a VIP from the program.

use std::net::IpAddr;

use aya::maps::Array;
use xdp_fwd_common::{addr_words, map_name, vip_filter_bit, VIP_FILTER_BITS};

use super::Forwarder;
use crate::Result;

/// Words of the filter map.
pub(super) const WORDS: usize = (VIP_FILTER_BITS / 64) as usize;

/// (word index, bit mask) of an address's bit.
fn position(addr: IpAddr) -> (usize, u64) {
    let (words, family) = addr_words(addr);
    let bit = vip_filter_bit(&words, family);
    ((bit / 64) as usize, 1 << (bit % 64))
}

/// The filter words for a set of VIP addresses.
pub(super) fn words_for(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<u64> {
    let mut words = vec![0u64; WORDS];
    for addr in addrs {
        let (i, mask) = position(addr);
        words[i] |= mask;
    }
    words
}

impl Forwarder {
    /// Sets the bit of `addr` (call before writing a VIP on it).
    pub(super) fn filter_add(&mut self, addr: IpAddr) -> Result<()> {
        let (i, mask) = position(addr);
        let mut wanted = self.vip_filter.clone();
        wanted[i] |= mask;
        self.write_filter(wanted)
    }

    /// Rewrites the words that differ from what the configured VIPs need
    /// (call after removing a VIP, and after adopting pinned maps).
    pub(super) fn filter_sync(&mut self) -> Result<()> {
        let wanted = words_for(self.vips.keys().map(|v| v.address));
        self.write_filter(wanted)
    }

    /// The filter as the map holds it (adopted maps).
    pub(super) fn read_filter(&self) -> Result<Vec<u64>> {
        let map: Array<_, u64> = Array::try_from(self.map(map_name::VIP_FILTER)?)?;
        let mut words = Vec::with_capacity(WORDS);
        for w in map.iter() {
            words.push(w?);
        }
        words.resize(WORDS, 0);
        Ok(words)
    }

    fn write_filter(&mut self, wanted: Vec<u64>) -> Result<()> {
        let written = std::mem::take(&mut self.vip_filter);
        let mut map: Array<_, u64> = Array::try_from(self.map_mut(map_name::VIP_FILTER)?)?;
        for (i, (&old, &new)) in written.iter().zip(wanted.iter()).enumerate() {
            if old != new {
                // One aligned 8-byte word per update: the program never sees
                // a partly written word.
                if let Err(e) = map.set(i as u32, new, 0) {
                    // Unknown state: rewrite every word next time.
                    self.vip_filter = vec![!0; WORDS];
                    return Err(e.into());
                }
            }
        }
        self.vip_filter = wanted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_sets_exactly_its_own_bit() {
        let addrs: Vec<IpAddr> = ["203.0.113.7", "203.0.113.8", "2001:db8::7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let words = words_for(addrs.iter().copied());
        let set: u32 = words.iter().map(|w| w.count_ones()).sum();
        assert_eq!(set, 3, "three addresses, three distinct bits");
        for a in addrs {
            let (i, mask) = position(a);
            assert_ne!(words[i] & mask, 0);
        }
    }
}
