//! A reference model of the forwarder's packet path, in plain Rust: the
//! rules of `xdp-fwd/FORWARDER.md` written out a second time, independently
//! of the eBPF code, so a differential fuzz (`tests/diff_fuzz.rs`) can run
//! the same frames through both and catch where they disagree.
//!
//! Given the programmed configuration ([`ModelConfig`]: settings, VIPs and
//! their tables, the routes `bpf_fib_lookup` would find) and its own copy of
//! the connection cache, [`Model::step`] computes the verdict, the output
//! frame byte for byte and the counters that change. It shares with the
//! program only the pure functions that define cross-node behaviour
//! (`flow_hash`, `maglev_slot`, pinned by golden vectors) and the cache's
//! set-index hash (`conn_index`); nothing else is read from the program.
//!
//! Second hop (a VIP's previous table, FORWARDER.md "Second hop") is
//! modelled: a non-SYN miss whose slot had another owner of the same
//! family carries it (GUE variant 0 or a middle IP header) and is cached
//! with it, so its hits carry it too (the program's check that the
//! previous owner's id kept its generation needs configuration changes
//! while frames run, which the model does not have; the fixtures cover it).
//!
//! What it does not model (the fuzz configures these away): flood-mode
//! admission (threshold off), UDP expiry (timeout longer than the run),
//! configuration changes while frames run, and the jiffies order of cache
//! entries touched within one tick: [`Outcome::tick_dependent`] reports when
//! an LRU choice depended on it, so a caller can empty both caches first.

mod cache;
mod encap;
mod parse;

use std::net::IpAddr;

use vip_key::{Protocol, VipKey};
use xdp_fwd_common::{flow_hash, maglev_slot, stats::stat, NO_BACKEND};

use cache::ConnModel;

use crate::{Encap, ForwarderSettings, VipOptions};

/// A VIP as programmed: its key, options and Maglev table.
#[derive(Clone, Debug)]
pub struct ModelVip {
    /// The VIP.
    pub key: VipKey,
    /// Hash fields and encapsulation.
    pub options: VipOptions,
    /// The table's backends.
    pub backends: Vec<IpAddr>,
    /// Slot -> index into `backends` ([`NO_BACKEND`] = empty slot); empty
    /// table = no table (every packet dropped).
    pub slots: Vec<u32>,
    /// The previous table (second hop), same form; `None` = none.
    pub previous: Option<(Vec<IpAddr>, Vec<u32>)>,
}

/// What `bpf_fib_lookup` finds for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    /// A route with a resolved neighbour.
    Neighbour {
        /// Egress interface.
        ifindex: u32,
        /// Next hop's MAC (the frame's destination).
        dmac: [u8; 6],
        /// Egress interface's MAC (the frame's source).
        smac: [u8; 6],
        /// Path MTU.
        mtu: u32,
    },
    /// A route whose neighbour is not resolved.
    NoNeighbour,
    /// No usable route.
    Unreachable,
}

/// A route: destination prefix and what a lookup inside it finds.
#[derive(Clone, Copy, Debug)]
pub struct ModelRoute {
    /// Prefix address.
    pub prefix: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// The lookup's result.
    pub outcome: RouteOutcome,
}

/// Everything the model is programmed with.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// The forwarder settings (flood threshold and UDP timeout are not
    /// modelled: see the module docs).
    pub settings: ForwarderSettings,
    /// The VIPs.
    pub vips: Vec<ModelVip>,
    /// Routes, longest prefix wins; no match = [`RouteOutcome::Unreachable`].
    pub routes: Vec<ModelRoute>,
    /// Interface the frames arrive on.
    pub ingress_ifindex: u32,
    /// Interfaces in the TX_PORTS device map.
    pub tx_ports: Vec<u32>,
    /// Connection-cache sets per CPU (a power of two).
    pub conn_sets: u32,
}

/// The model's result for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// XDP verdict ([`crate::verdict`]).
    pub verdict: u32,
    /// The frame as the program must leave it.
    pub frame: Vec<u8>,
    /// Counter increments, indexed like [`stat`].
    pub counters: [u64; stat::COUNT as usize],
    /// (VIP, bytes) counted in the VIP's traffic.
    pub vip_traffic: Option<(VipKey, u64)>,
    /// (backend, bytes) counted in the backend's traffic.
    pub backend_traffic: Option<(IpAddr, u64)>,
    /// The cache replaced a live entry by LRU order where the program, which
    /// orders by jiffies with ties to the lowest way, could have chosen
    /// another way (entries touched in one tick): the caller should empty
    /// both caches and run the frame again.
    pub tick_dependent: bool,
}

impl Outcome {
    fn new(frame: &[u8]) -> Self {
        Self {
            verdict: crate::verdict::PASS,
            frame: frame.to_vec(),
            counters: [0; stat::COUNT as usize],
            vip_traffic: None,
            backend_traffic: None,
            tick_dependent: false,
        }
    }

    fn count(&mut self, index: u32) {
        self.counters[index as usize] += 1;
    }

    /// Ends with `verdict`, counting the action total.
    fn finish(mut self, verdict: u32) -> Self {
        self.verdict = verdict;
        self.count(verdict);
        self
    }

    fn drop(mut self, reason: u32) -> Self {
        self.count(reason);
        self.finish(crate::verdict::DROP)
    }

    /// Passes the frame untouched.
    fn pass(mut self, input: &[u8]) -> Self {
        self.frame = input.to_vec();
        self.finish(crate::verdict::PASS)
    }
}

/// The model: configuration and connection cache. Counters are per
/// [`Outcome`]: the caller adds them up.
pub struct Model {
    config: ModelConfig,
    cache: ConnModel,
}

/// The flow a packet belongs to, in host terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Flow {
    fn key(&self) -> xdp_fwd_common::FlowKey {
        crate::flow_key(self.src, self.dst, self.sport, self.dport, self.proto)
    }
}

impl Model {
    /// A model programmed with `config`, with an empty cache.
    pub fn new(config: ModelConfig) -> Self {
        let cache = ConnModel::new(config.conn_sets, config.settings.hash_seed);
        Self { config, cache }
    }

    /// Empties the model's connection cache.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// The outcome of `frame`, counters included; updates the cache.
    pub fn step(&mut self, frame: &[u8]) -> Outcome {
        let out = Outcome::new(frame);
        let Some(pkt) = parse::parse(frame) else {
            return out.pass(frame);
        };
        if pkt.fragment || pkt.ext_header {
            if !self.is_vip_address(pkt.dst) {
                return out.pass(frame);
            }
            return out.drop(if pkt.fragment {
                stat::DROP_FRAGMENT
            } else {
                stat::DROP_IPV6_EXT
            });
        }
        match pkt.l4 {
            parse::L4::Flow { sport, dport, syn } => {
                let flow = Flow {
                    src: pkt.src,
                    dst: pkt.dst,
                    sport,
                    dport,
                    proto: pkt.proto,
                };
                self.forward_l4(frame, &pkt, flow, syn, out)
            }
            parse::L4::Icmp { kind, code } => self.icmp(frame, &pkt, kind, code, out),
            parse::L4::Other => out.pass(frame),
        }
    }

    fn is_vip_address(&self, addr: IpAddr) -> bool {
        self.config.vips.iter().any(|v| v.key.address == addr)
    }

    /// Exact port first, then the VIP's all-ports entry.
    fn vip_lookup(&self, addr: IpAddr, port: u16, proto: u8) -> Option<usize> {
        let protocol = match proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            _ => return None,
        };
        let find = |p: u16| {
            self.config
                .vips
                .iter()
                .position(|v| v.key == VipKey::new(addr, p, protocol))
        };
        find(port).or_else(|| find(0))
    }

    fn forward_l4(
        &mut self,
        frame: &[u8],
        pkt: &parse::Packet,
        flow: Flow,
        syn: bool,
        mut out: Outcome,
    ) -> Outcome {
        // A cached flow keeps its VIP (the configuration does not change
        // under the model, so it is the one the lookup would find).
        let cached = if syn { None } else { self.cache.hit(&flow) };
        let vip = match cached {
            Some(entry) => entry.vip,
            None => match self.vip_lookup(flow.dst, flow.dport, flow.proto) {
                Some(v) => v,
                None => return out.pass(frame),
            },
        };
        self.count_vip(frame, pkt, vip, &mut out);
        let choice = match cached {
            Some(entry) => {
                out.count(stat::LRU_HIT);
                Ok((entry.backend, entry.hash, entry.prev))
            }
            // Only a non-SYN packet may carry a previous owner.
            None => self.select_new(&flow, vip, syn, !syn, &mut out),
        };
        match choice {
            Ok((backend, hash, prev)) => self.send(frame, pkt, vip, backend, hash, prev, out),
            Err(reason) => out.drop(reason),
        }
    }

    fn count_vip(&self, frame: &[u8], pkt: &parse::Packet, vip: usize, out: &mut Outcome) {
        out.vip_traffic = Some((self.config.vips[vip].key, frame.len() as u64));
        if pkt.ipv4_options {
            out.count(stat::IPV4_OPTIONS);
        }
    }

    /// A flow without a usable cache entry (or a SYN): by the table, then
    /// cached; with `second_hop`, a previous table naming another owner
    /// makes the packet carry that owner, and the entry keeps it. A hit
    /// carries its entry's previous owner only with `second_hop`.
    fn select_new(
        &mut self,
        flow: &Flow,
        vip: usize,
        syn: bool,
        second_hop: bool,
        out: &mut Outcome,
    ) -> Result<(IpAddr, u32, Option<IpAddr>), u32> {
        if !syn {
            if let Some(e) = self.cache.hit(flow) {
                out.count(stat::LRU_HIT);
                return Ok((e.backend, e.hash, e.prev.filter(|_| second_hop)));
            }
        }
        out.count(stat::LRU_MISS);
        let v = &self.config.vips[vip];
        let flags = v.options.flags();
        let hash = flow_hash(&flow.key(), self.config.settings.hash_seed, flags);
        if v.slots.is_empty() {
            return Err(stat::DROP_NO_BACKEND);
        }
        let slot = v.slots[maglev_slot(hash, v.slots.len() as u32) as usize];
        if slot == NO_BACKEND {
            return Err(stat::DROP_NO_BACKEND);
        }
        let backend = *v.backends.get(slot as usize).ok_or(stat::DROP_NO_BACKEND)?;
        let prev = if second_hop {
            previous_owner(v, hash, backend)
        } else {
            None
        };
        let evicted = self.cache.insert(
            flow,
            cache::Cached {
                backend,
                hash,
                vip,
                prev,
            },
        );
        if let Some((established, tick_dependent)) = evicted {
            out.tick_dependent |= tick_dependent;
            out.count(stat::LRU_EVICTED);
            if established {
                out.count(stat::LRU_EVICTED_ESTABLISHED);
            }
        }
        Ok((backend, hash, prev))
    }

    fn route(&self, dst: IpAddr) -> RouteOutcome {
        self.config
            .routes
            .iter()
            .filter(|r| in_prefix(dst, r.prefix, r.len))
            .max_by_key(|r| r.len)
            .map_or(RouteOutcome::Unreachable, |r| r.outcome)
    }

    /// Route, encapsulate (carrying `prev`, the previous owner, if any),
    /// transmit.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        frame: &[u8],
        pkt: &parse::Packet,
        vip: usize,
        backend: IpAddr,
        hash: u32,
        prev: Option<IpAddr>,
        mut out: Outcome,
    ) -> Outcome {
        out.backend_traffic = Some((backend, frame.len() as u64));
        let s = &self.config.settings;
        let gue = match self.config.vips[vip].options.encap {
            Encap::Default => s.default_encap == Encap::Gue,
            e => e == Encap::Gue,
        };
        let outer_len = pkt.ip_len as u32 + encap::overhead(backend, gue, prev.is_some()) as u32;
        if outer_len > 0xffff {
            return out.drop(stat::DROP_MTU);
        }
        let (macs, next) = match self.route(backend) {
            RouteOutcome::Unreachable => return out.drop(stat::DROP_FIB),
            RouteOutcome::NoNeighbour => {
                let mut m = [0u8; 12];
                m.copy_from_slice(&frame[..12]);
                (m, None)
            }
            RouteOutcome::Neighbour {
                ifindex,
                dmac,
                smac,
                mtu,
            } => {
                if outer_len > mtu {
                    return out.drop(stat::DROP_MTU);
                }
                let mut m = [0u8; 12];
                m[..6].copy_from_slice(&dmac);
                m[6..].copy_from_slice(&smac);
                (m, Some(ifindex))
            }
        };
        out.frame = encap::encapsulate(frame, pkt, s, backend, hash, gue, prev, macs);
        if prev.is_some() {
            out.count(stat::SECOND_HOP_SENT);
        }
        match next {
            None => {
                out.count(stat::PASS_NO_NEIGH);
                out.finish(crate::verdict::PASS)
            }
            Some(i) if i == self.config.ingress_ifindex => out.finish(crate::verdict::TX),
            Some(i) if self.config.tx_ports.contains(&i) => out.finish(crate::verdict::REDIRECT),
            Some(_) => out.drop(stat::DROP_NO_EGRESS),
        }
    }

    fn icmp(
        &mut self,
        frame: &[u8],
        pkt: &parse::Packet,
        kind: u8,
        code: u8,
        out: Outcome,
    ) -> Outcome {
        let v4 = pkt.src.is_ipv4();
        let echo = if v4 { 8 } else { 128 };
        if kind == echo && self.is_vip_address(pkt.dst) {
            let mut out = out;
            out.frame = encap::echo_reply(frame, pkt);
            out.count(stat::ICMP_ECHO_REPLY);
            return out.finish(crate::verdict::TX);
        }
        let too_big = if v4 {
            kind == 3 && code == 4
        } else {
            kind == 2
        };
        if !too_big {
            return out.pass(frame);
        }
        // The quote is of a backend's packet (VIP -> client): the client's
        // flow is the quote reversed.
        let Some(q) = parse::quoted(frame, pkt) else {
            return out.pass(frame);
        };
        if q.proto != 6 && q.proto != 17 {
            return out.pass(frame);
        }
        let flow = Flow {
            src: q.dst,
            dst: q.src,
            sport: q.dport,
            dport: q.sport,
            proto: q.proto,
        };
        let Some(vip) = self.vip_lookup(flow.dst, flow.dport, flow.proto) else {
            return out.pass(frame);
        };
        let mut out = out;
        out.count(stat::ICMP_PTB_FORWARDED);
        self.count_vip(frame, pkt, vip, &mut out);
        // ICMP forwarding never carries a previous owner.
        match self.select_new(&flow, vip, false, false, &mut out) {
            Ok((backend, hash, _)) => self.send(frame, pkt, vip, backend, hash, None, out),
            Err(reason) => out.drop(reason),
        }
    }
}

/// The owner of `hash`'s slot in the VIP's previous table, when it is a
/// backend other than `current`, of the same family.
fn previous_owner(v: &ModelVip, hash: u32, current: IpAddr) -> Option<IpAddr> {
    let (backends, slots) = v.previous.as_ref()?;
    if slots.is_empty() {
        return None;
    }
    let slot = slots[maglev_slot(hash, slots.len() as u32) as usize];
    let prev = *backends.get(usize::try_from(slot).ok()?)?;
    (prev != current && prev.is_ipv4() == current.is_ipv4()).then_some(prev)
}

/// Whether `addr` is inside `prefix`/`len` (same family).
fn in_prefix(addr: IpAddr, prefix: IpAddr, len: u8) -> bool {
    match (addr, prefix) {
        (IpAddr::V4(a), IpAddr::V4(p)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & m == u32::from(p) & m
        }
        (IpAddr::V6(a), IpAddr::V6(p)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & m == u128::from(p) & m
        }
        _ => false,
    }
}
