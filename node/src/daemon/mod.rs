//! The `lbnode` daemon: ties consensus, the data plane, BGP, health checks,
//! metrics and the admin API together.
//!
//! Data flows one way: Raft log -> applied state -> Maglev tables -> BPF maps.
//! The BGP announcement follows from the node's readiness (see [`announce`]).

pub mod admin_handler;
pub mod announce;
pub mod dataplane;
pub mod health_monitor;
pub mod telemetry;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{anyhow, Context};
use edgelb_bgp::{BgpSpeaker, DesiredRoutes, PeerConfig, RouteAttributes, SpeakerConfig};
use edgelb_consensus::{ClusterSecret, ConsensusConfig, ConsensusNode, Timeouts};
use tokio::sync::{watch, Mutex};
use xdp_fwd::{AttachMode, Forwarder, LoadOptions};

use crate::{
    config::{parse_community, read_secret, Config, XdpAttachMode},
    daemon::{
        announce::{vip_routes, Readiness},
        dataplane::{DataPlane, LocalSettings},
    },
    tables::digest_hex,
};

/// How the daemon was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// SIGTERM / SIGINT: withdraw, drain while forwarding, detach, exit.
    Shutdown,
    /// SIGUSR2: exit for a restart, leaving XDP attached and its maps pinned
    /// (the next process adopts them) and BGP routes held by graceful restart.
    Restart,
}

/// What the data plane has programmed, published for the other tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programmed {
    /// Table version programmed.
    pub version: u64,
    /// Digest of the programmed tables.
    pub digest: u64,
    /// Last programming error, if the latest state could not be programmed.
    pub error: Option<String>,
}

/// Everything the tasks share.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// This node's Raft member.
    pub consensus: ConsensusNode,
    /// The data plane (map writes happen under this lock only).
    pub dataplane: Mutex<DataPlane>,
    /// Published programmed version/digest.
    pub programmed: watch::Receiver<Programmed>,
    /// The BGP speaker, started once the node is first ready (see
    /// [`BGP_START_WAIT`]).
    pub bgp: std::sync::OnceLock<BgpSpeaker>,
    /// Its configuration.
    pub bgp_config: SpeakerConfig,
    /// Whether routes are currently announced.
    pub announcing: watch::Receiver<bool>,
    /// Interfaces and their attach mode.
    pub attached: std::sync::Mutex<Vec<(String, String)>>,
    /// Admin token (other nodes' admin APIs share it).
    pub admin_token: String,
}

fn attach_mode(m: XdpAttachMode) -> AttachMode {
    match m {
        XdpAttachMode::Driver => AttachMode::Driver,
        XdpAttachMode::Generic => AttachMode::Generic,
    }
}

fn mode_name(m: XdpAttachMode) -> &'static str {
    match m {
        XdpAttachMode::Driver => "driver",
        XdpAttachMode::Generic => "generic",
    }
}

/// How long after start the daemon waits for the node to be ready before
/// it opens its BGP sessions anyway (announcing nothing).
///
/// Sessions open only when there is something true to say: after a hot
/// restart the routers still hold this node's routes as stale (graceful
/// restart) while the adopted XDP program forwards; a session opened before
/// the node is ready would send an empty table and End-of-RIB, making the
/// routers drop those routes for nothing.
pub const BGP_START_WAIT: Duration = Duration::from_secs(30);

/// The speaker's peers as reported before it started.
pub fn configured_peers(config: &SpeakerConfig) -> Vec<(std::net::IpAddr, &'static str)> {
    config.peers.iter().map(|p| (p.address, "NotStarted")).collect()
}

fn speaker_config(config: &Config, restarted: bool) -> anyhow::Result<SpeakerConfig> {
    let peers = config
        .bgp
        .peers
        .iter()
        .map(|p| {
            let mut peer = PeerConfig::new(p.address, p.remote_asn);
            peer.port = p.port;
            peer.hold_time_secs = p.hold_time_secs;
            peer.next_hop_v4 = match p.next_hop_v4 {
                Some(std::net::IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            peer.next_hop_v6 = match p.next_hop_v6 {
                Some(std::net::IpAddr::V6(a)) => Some(a),
                _ => None,
            };
            peer.connect_retry_min = Duration::from_millis(200);
            peer.connect_retry_max = Duration::from_secs(5);
            peer
        })
        .collect();
    Ok(SpeakerConfig {
        local_asn: config.bgp.local_asn,
        router_id: config.bgp.router_id,
        listen: None,
        graceful_restart: Some(edgelb_bgp::GracefulRestartConfig { restart_time_secs: 120, restarting: restarted }),
        peers,
    })
}

fn route_attributes(config: &Config) -> RouteAttributes {
    RouteAttributes {
        communities: config.bgp.communities.iter().filter_map(|c| parse_community(c)).collect(),
        ..RouteAttributes::default()
    }
}

/// Runs the daemon until `stop` yields; returns after the stop sequence.
pub async fn run(config: Config, mut stop: watch::Receiver<Option<StopKind>>) -> anyhow::Result<()> {
    let secret = read_secret(&config.cluster.secret_file)?;
    let token = String::from_utf8(read_secret(&config.admin.token_file)?)
        .map_err(|_| anyhow!("{}: the admin token must be UTF-8", config.admin.token_file.display()))?;
    let admin_listener = crate::admin::server::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen {}", config.admin.listen))?;
    if let Some(addr) = config.metrics.listen {
        telemetry::install_prometheus(addr)?;
    }

    // 1. The data plane: load (or adopt pinned maps), program nothing yet.
    let local = LocalSettings {
        source_v4: config.encap_source_v4().map_err(|e| anyhow!("xdp.encap_source_v4: {e}"))?,
        source_v6: config.encap_source_v6().map_err(|e| anyhow!("xdp.encap_source_v6: {e}"))?,
        udp_timeout: Duration::from_secs(u64::from(config.xdp.udp_flow_timeout_secs)),
    };
    let mut capacity = xdp_fwd::Capacity::default();
    capacity.flows = config.xdp.conn_table_size;
    let forwarder = Forwarder::load_with(LoadOptions { pin_dir: Some(config.xdp.pin_dir.clone()), capacity })
        .context("loading the XDP forwarder")?;
    tracing::info!(adopted = forwarder.adopted(), pin_dir = %config.xdp.pin_dir.display(), "XDP forwarder loaded");
    let adopted = forwarder.adopted();
    let dataplane = DataPlane::new(forwarder, local);

    // 2. Consensus.
    let mut cc = ConsensusConfig::new(
        config.node.id,
        config.cluster.listen,
        config.node.data_dir.clone(),
        ClusterSecret::new(secret).map_err(|e| anyhow!("cluster secret: {e}"))?,
    );
    cc.advertise_addr = Some(config.advertise_addr().to_string());
    cc.timeouts = Timeouts {
        heartbeat: Duration::from_millis(config.cluster.heartbeat_ms),
        election_min: Duration::from_millis(config.cluster.election_timeout_ms),
        election_max: config.election_timeout_max(),
        ..Timeouts::default()
    };
    let consensus = ConsensusNode::start(cc).await.context("starting consensus")?;
    let members = &config.cluster.initial_members;
    if let Some(first) = members.iter().map(|m| m.id).min() {
        let fresh = consensus.status().voters.is_empty();
        if fresh && first == config.node.id {
            let map: BTreeMap<u64, String> = members.iter().map(|m| (m.id, m.addr.to_string())).collect();
            match consensus.initialize(map).await {
                Ok(()) => tracing::info!("initialized a new cluster"),
                Err(e) => tracing::info!(error = %e, "cluster already initialized"),
            }
        }
    }

    // 3. BGP: validated now, started by the announce loop once ready.
    // Adopted pins mean a restart with forwarding preserved: say so in the
    // graceful-restart capability.
    let bgp_config = speaker_config(&config, adopted)?;
    bgp_config.validate().context("bgp")?;

    let (programmed_tx, programmed_rx) = watch::channel(Programmed::default());
    let (announcing_tx, announcing_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: config.clone(),
        consensus,
        dataplane: Mutex::new(dataplane),
        programmed: programmed_rx,
        bgp: std::sync::OnceLock::new(),
        bgp_config,
        announcing: announcing_rx,
        attached: std::sync::Mutex::new(Vec::new()),
        admin_token: token.clone(),
    });

    // The forwarder routes encapsulated packets with bpf_fib_lookup, which
    // fails (counted as drop_fib) where forwarding is off.
    for iface in &config.xdp.interfaces {
        for family in ["ipv4", "ipv6"] {
            let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
            if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
                tracing::warn!(%path, "forwarding is off: encapsulated packets will be dropped (set it to 1)");
            }
        }
    }

    // 4. Attach XDP (after the maps have a program to serve).
    {
        let mut dp = shared.dataplane.lock().await;
        for iface in &config.xdp.interfaces {
            dp.forwarder()
                .attach(iface, attach_mode(config.xdp.mode))
                .with_context(|| format!("attaching XDP to {iface}"))?;
            dp.forwarder().add_tx_port(iface).with_context(|| format!("TX port {iface}"))?;
        }
        let mut a = shared.attached.lock().unwrap_or_else(|e| e.into_inner());
        *a = config.xdp.interfaces.iter().map(|i| (i.clone(), mode_name(config.xdp.mode).to_owned())).collect();
    }
    tracing::info!(interfaces = ?config.xdp.interfaces, mode = mode_name(config.xdp.mode), "XDP attached");

    let (task_stop_tx, task_stop) = watch::channel(false);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = vec![
        tokio::spawn(sync_dataplane(shared.clone(), programmed_tx, task_stop.clone())),
        tokio::spawn(announce_loop(shared.clone(), announcing_tx, draining.clone(), task_stop.clone())),
        tokio::spawn(telemetry::metrics_loop(shared.clone(), task_stop.clone())),
        tokio::spawn(crate::admin::server::serve(
            admin_listener,
            Arc::new(token.into_bytes()),
            Arc::new(admin_handler::Handler::new(shared.clone())),
            task_stop.clone(),
        )),
    ];

    if config.health.enabled {
        tasks.push(tokio::spawn(health_monitor::run(shared.clone(), task_stop.clone())));
    }

    // 5. Wait for a stop request.
    let kind = loop {
        if let Some(kind) = *stop.borrow_and_update() {
            break kind;
        }
        if stop.changed().await.is_err() {
            break StopKind::Shutdown;
        }
    };
    tracing::info!(?kind, "stopping");
    match kind {
        StopKind::Shutdown => {
            // Withdraw, keep forwarding while routers move flows away, then
            // close the sessions (Cease) and detach.
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(bgp) = shared.bgp.get() {
                bgp.set_desired(DesiredRoutes::new());
            }
            tracing::info!(period = ?config.drain_period(), "routes withdrawn; draining");
            tokio::time::sleep(config.drain_period()).await;
        }
        StopKind::Restart => {}
    }
    let _ = task_stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow!("a task still holds the daemon state"))?;
    match (kind, shared.bgp.into_inner()) {
        (_, None) => {}
        (StopKind::Shutdown, Some(bgp)) => bgp.shutdown().await,
        // No Cease: the sessions' TCP connections close when the process
        // exits, so routers in graceful-restart helper mode keep this node's
        // routes (stale) until the next process re-announces them, while
        // the still-attached XDP program keeps forwarding.
        (StopKind::Restart, Some(bgp)) => std::mem::forget(bgp),
    }
    if kind == StopKind::Shutdown {
        let mut dp = shared.dataplane.into_inner();
        for iface in &config.xdp.interfaces {
            if let Err(e) = dp.forwarder().detach(iface) {
                tracing::warn!(%iface, error = %e, "detach failed");
            }
        }
        if let Err(e) = Forwarder::remove_pins(&config.xdp.pin_dir) {
            tracing::warn!(error = %e, "removing pinned maps failed");
        }
        tracing::info!("XDP detached");
    }
    shared.consensus.shutdown().await.context("stopping consensus")?;
    tracing::info!("stopped");
    Ok(())
}

/// Programs every applied state into the data plane, in order.
async fn sync_dataplane(shared: Arc<Shared>, out: watch::Sender<Programmed>, mut stop: watch::Receiver<bool>) {
    let mut states = shared.consensus.subscribe();
    loop {
        let state = states.borrow_and_update().clone();
        let result = {
            let mut dp = shared.dataplane.lock().await;
            // Map writes may wait out the ring's reuse grace: keep them off
            // the async workers' hot path.
            tokio::task::block_in_place(|| dp.apply(&state).map(|t| (t.version, t.digest)))
        };
        match result {
            Ok((version, digest)) => {
                tracing::info!(version, digest = %digest_hex(digest), "data plane programmed");
                out.send_replace(Programmed { version, digest, error: None });
            }
            Err(e) => {
                tracing::error!(version = state.version, error = %e, "programming the data plane failed; retrying");
                out.send_modify(|p| p.error = Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        tokio::select! {
            r = states.changed() => if r.is_err() { return },
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}

/// The node's readiness right now; `out_of_sync_for` is how long the caller
/// has seen it out of sync.
pub fn readiness(shared: &Shared, draining: bool, out_of_sync_for: Duration) -> Readiness {
    let status = shared.consensus.status();
    let applied_version = shared.consensus.state().version;
    let programmed = shared.programmed.borrow().clone();
    let in_cluster = announce::in_cluster(&status, shared.config.quorum_ack_bound());
    let apply_lag = status.committed_index.unwrap_or(0).saturating_sub(status.applied_index.unwrap_or(0));
    let attached = !shared.attached.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
    Readiness {
        attached,
        programmed_version: programmed.version,
        applied_version,
        in_cluster,
        apply_lag,
        draining,
        out_of_sync_for,
        programming_failed: programmed.error.is_some(),
    }
}

/// Converges the BGP announcement to the node's readiness and VIPs.
async fn announce_loop(
    shared: Arc<Shared>,
    out: watch::Sender<bool>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let attributes = route_attributes(&shared.config);
    let mut last: Option<Result<Vec<std::net::IpAddr>, announce::Withheld>> = None;
    let mut out_of_sync_since: Option<std::time::Instant> = None;
    let started = std::time::Instant::now();
    loop {
        let draining_now = draining.load(std::sync::atomic::Ordering::SeqCst);
        let mut ready = readiness(&shared, draining_now, Duration::ZERO);
        if ready.out_of_sync() {
            let since = *out_of_sync_since.get_or_insert_with(std::time::Instant::now);
            ready.out_of_sync_for = since.elapsed();
        } else {
            out_of_sync_since = None;
        }
        let decision = ready.decide().map(|()| {
            let state = shared.consensus.state();
            let mut addrs: Vec<_> = state.vips.keys().map(|k| k.address).collect();
            addrs.dedup();
            addrs
        });
        let bgp = match shared.bgp.get() {
            Some(bgp) => Some(bgp),
            None if draining_now => None,
            None if decision.is_ok() || started.elapsed() >= BGP_START_WAIT => {
                match BgpSpeaker::start(shared.bgp_config.clone()).await {
                    Ok(speaker) => {
                        tracing::info!(ready = decision.is_ok(), "BGP sessions starting");
                        Some(shared.bgp.get_or_init(|| speaker))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "starting BGP failed; retrying");
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(bgp) = bgp.filter(|_| last.as_ref() != Some(&decision)) {
            match &decision {
                Ok(addrs) => {
                    tracing::info!(vips = addrs.len(), "announcing VIPs");
                    bgp.set_desired(vip_routes(addrs.iter().copied(), &attributes));
                }
                Err(why) => {
                    tracing::warn!(reason = ?why, "withdrawing VIPs");
                    bgp.set_desired(DesiredRoutes::new());
                }
            }
            out.send_replace(decision.is_ok());
            last = Some(decision);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}
