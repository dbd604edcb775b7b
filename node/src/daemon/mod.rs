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
    config::{parse_aggregate, parse_community, read_secret, Config, XdpAttachMode},
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
    /// The BGP speaker.
    pub bgp: BgpSpeaker,
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

/// The speaker's configuration. `restarting`: this process adopted a running
/// data plane (hot restart), so routers are asked to keep our routes until
/// we send End-of-RIB (RFC 4724 Restart State).
fn speaker_config(config: &Config, restarting: bool) -> anyhow::Result<SpeakerConfig> {
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
        graceful_restart: (config.bgp.graceful_restart_secs > 0).then_some(
            edgelb_bgp::GracefulRestartConfig {
                restart_time_secs: config.bgp.graceful_restart_secs,
                restarting,
            },
        ),
        peers,
    })
}

fn route_attributes(config: &Config) -> RouteAttributes {
    RouteAttributes {
        communities: config
            .bgp
            .communities
            .iter()
            .filter_map(|c| parse_community(c))
            .collect(),
        med: config.bgp.med,
        as_path_prepend: config.bgp.as_path_prepend,
        ..RouteAttributes::default()
    }
}

/// What a ready node announces: a host route per VIP address plus the
/// configured aggregates, all with `attributes`.
fn announced_routes(
    config: &Config,
    vips: &[std::net::IpAddr],
    attributes: &RouteAttributes,
) -> DesiredRoutes {
    let mut routes = vip_routes(vips.iter().copied(), attributes);
    // Validated with the config; a prefix the speaker still refuses is logged.
    for net in config
        .bgp
        .aggregates
        .iter()
        .filter_map(|a| parse_aggregate(a).ok())
    {
        if let Err(e) = routes.insert(net, attributes.clone()) {
            tracing::warn!(aggregate = %net, error = %e, "aggregate cannot be announced");
        }
    }
    routes
}

/// Runs the daemon until `stop` yields; returns after the stop sequence.
pub async fn run(
    config: Config,
    mut stop: watch::Receiver<Option<StopKind>>,
) -> anyhow::Result<()> {
    let secret = read_secret(&config.cluster.secret_file)?;
    let token = String::from_utf8(read_secret(&config.admin.token_file)?).map_err(|_| {
        anyhow!(
            "{}: the admin token must be UTF-8",
            config.admin.token_file.display()
        )
    })?;
    let admin_listener = crate::admin::server::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen {}", config.admin.listen))?;
    if let Some(addr) = config.metrics.listen {
        telemetry::install_prometheus(addr)?;
    }

    // 1. The data plane: load (or adopt pinned maps), program nothing yet.
    let local = LocalSettings {
        source_v4: config
            .encap_source_v4()
            .map_err(|e| anyhow!("xdp.encap_source_v4: {e}"))?,
        source_v6: config
            .encap_source_v6()
            .map_err(|e| anyhow!("xdp.encap_source_v6: {e}"))?,
        udp_timeout: Duration::from_secs(u64::from(config.xdp.udp_flow_timeout_secs)),
    };
    let capacity = xdp_fwd::Capacity {
        flows: config.xdp.conn_table_size,
        ..Default::default()
    };
    let forwarder = Forwarder::load_with(LoadOptions {
        pin_dir: Some(config.xdp.pin_dir.clone()),
        capacity,
    })
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
    let consensus = ConsensusNode::start(cc)
        .await
        .context("starting consensus")?;
    let members = &config.cluster.initial_members;
    if let Some(first) = members.iter().map(|m| m.id).min() {
        let fresh = consensus.status().voters.is_empty();
        if fresh && first == config.node.id {
            let map: BTreeMap<u64, String> =
                members.iter().map(|m| (m.id, m.addr.to_string())).collect();
            match consensus.initialize(map).await {
                Ok(()) => tracing::info!("initialized a new cluster"),
                Err(e) => tracing::info!(error = %e, "cluster already initialized"),
            }
        }
    }

    // 3. BGP.
    let bgp = BgpSpeaker::start(speaker_config(&config, adopted)?)
        .await
        .context("starting BGP")?;

    let (programmed_tx, programmed_rx) = watch::channel(Programmed::default());
    let (announcing_tx, announcing_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: config.clone(),
        consensus,
        dataplane: Mutex::new(dataplane),
        programmed: programmed_rx,
        bgp,
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
            dp.forwarder()
                .add_tx_port(iface)
                .with_context(|| format!("TX port {iface}"))?;
        }
        let mut a = shared.attached.lock().unwrap_or_else(|e| e.into_inner());
        *a = config
            .xdp
            .interfaces
            .iter()
            .map(|i| (i.clone(), mode_name(config.xdp.mode).to_owned()))
            .collect();
    }
    tracing::info!(interfaces = ?config.xdp.interfaces, mode = mode_name(config.xdp.mode), "XDP attached");

    let (task_stop_tx, task_stop) = watch::channel(false);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prepending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = vec![
        tokio::spawn(sync_dataplane(
            shared.clone(),
            programmed_tx,
            task_stop.clone(),
        )),
        tokio::spawn(announce_loop(
            shared.clone(),
            announcing_tx,
            draining.clone(),
            prepending.clone(),
            // After a hot restart, give the node this long to become ready
            // before a withdrawal would end the routers' graceful restart.
            adopted.then(|| {
                tokio::time::Instant::now()
                    + Duration::from_secs(u64::from(config.bgp.graceful_restart_secs) / 2)
            }),
            task_stop.clone(),
        )),
        tokio::spawn(telemetry::metrics_loop(shared.clone(), task_stop.clone())),
        tokio::spawn(crate::admin::server::serve(
            admin_listener,
            Arc::new(token.into_bytes()),
            Arc::new(admin_handler::Handler::new(shared.clone())),
            task_stop.clone(),
        )),
    ];

    if config.health.enabled {
        tasks.push(tokio::spawn(health_monitor::run(
            shared.clone(),
            task_stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(register_admin_addr(
        shared.clone(),
        task_stop.clone(),
    )));

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
            if config.drain.prepend_secs > 0 && *shared.announcing.borrow() {
                // First make this node's paths longer than its peers': routers
                // move flows away while our route still backs them up.
                // (announce_loop re-announces with the longer path.)
                prepending.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(
                    secs = config.drain.prepend_secs,
                    "AS_PATH prepended; draining before withdrawal"
                );
                tokio::time::sleep(Duration::from_secs(config.drain.prepend_secs)).await;
            }
            draining.store(true, std::sync::atomic::Ordering::SeqCst);
            shared.bgp.set_desired(DesiredRoutes::new());
            tracing::info!(period = ?config.drain_period(), "routes withdrawn; draining");
            tokio::time::sleep(config.drain_period()).await;
        }
        StopKind::Restart => {}
    }
    let _ = task_stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let shared =
        Arc::try_unwrap(shared).map_err(|_| anyhow!("a task still holds the daemon state"))?;
    match kind {
        StopKind::Shutdown => shared.bgp.shutdown().await,
        // No Cease: routers keep our routes across the restart (RFC 4724).
        StopKind::Restart => shared.bgp.abandon(),
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
    shared
        .consensus
        .shutdown()
        .await
        .context("stopping consensus")?;
    tracing::info!("stopped");
    Ok(())
}

/// Records this node's admin address in the replicated state (once it is a
/// member and whenever the record differs), so `lbctl status` on any node
/// reaches nodes added at runtime.
async fn register_admin_addr(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let addr = shared.config.admin_advertise_addr();
    let id = shared.config.node.id;
    loop {
        let status = shared.consensus.status();
        let recorded = shared.consensus.state().admin_addrs.get(&id).copied();
        if recorded != Some(addr) && status.nodes.contains_key(&id) && status.leader.is_some() {
            match shared
                .consensus
                .write(edgelb_consensus::Command::SetAdminAddr { node: id, addr })
                .await
            {
                Ok(_) => tracing::info!(%addr, "admin address registered"),
                Err(e) => tracing::debug!(error = %e, "registering the admin address; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}

/// Programs every applied state into the data plane, in order.
async fn sync_dataplane(
    shared: Arc<Shared>,
    out: watch::Sender<Programmed>,
    mut stop: watch::Receiver<bool>,
) {
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
                out.send_replace(Programmed {
                    version,
                    digest,
                    error: None,
                });
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

/// The node's readiness right now, with `out_of_sync_for` zero: only the
/// announce loop knows since when the node has been out of sync.
pub fn readiness(shared: &Shared, draining: bool) -> Readiness {
    let status = shared.consensus.status();
    let applied_version = shared.consensus.state().version;
    let programmed = shared.programmed.borrow().clone();
    let in_cluster = announce::in_cluster(&status, shared.config.quorum_ack_bound());
    let apply_lag = status
        .committed_index
        .unwrap_or(0)
        .saturating_sub(status.applied_index.unwrap_or(0));
    let attached = !shared
        .attached
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty();
    Readiness {
        attached,
        programmed_version: programmed.version,
        applied_version,
        in_cluster,
        apply_lag,
        applied_index: status.applied_index.unwrap_or(0),
        draining,
        out_of_sync_for: Duration::ZERO,
        programming_failed: programmed.error.is_some(),
    }
}

/// Converges the BGP announcement to the node's readiness and VIPs.
async fn announce_loop(
    shared: Arc<Shared>,
    out: watch::Sender<bool>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    prepending: Arc<std::sync::atomic::AtomicBool>,
    mut restart_grace: Option<tokio::time::Instant>,
    mut stop: watch::Receiver<bool>,
) {
    let normal = route_attributes(&shared.config);
    let mut longer = normal.clone();
    longer.as_path_prepend = longer
        .as_path_prepend
        .saturating_add(shared.config.drain.prepend_count);
    // The decision: the VIP addresses and whether their paths are prepended.
    let mut last: Option<Result<(Vec<std::net::IpAddr>, bool), announce::Withheld>> = None;
    let mut sync_clock = announce::SyncClock::default();
    loop {
        let draining_now = draining.load(std::sync::atomic::Ordering::SeqCst);
        let mut ready = readiness(&shared, draining_now);
        ready.out_of_sync_for = sync_clock.observe(&ready, std::time::Instant::now());
        let decision = ready.decide().map(|()| {
            let state = shared.consensus.state();
            let mut addrs: Vec<_> = state.vips.keys().map(|k| k.address).collect();
            addrs.dedup();
            (addrs, prepending.load(std::sync::atomic::Ordering::SeqCst))
        });
        // A restarted node that is not ready yet stays silent rather than
        // withdrawing: the routers hold its previous routes meanwhile.
        let holding =
            restart_grace.is_some_and(|t| decision.is_err() && tokio::time::Instant::now() < t);
        if !holding && restart_grace.take().is_some() {
            tracing::info!(ready = decision.is_ok(), "restart grace over");
        }
        if !holding && last.as_ref() != Some(&decision) {
            match &decision {
                Ok((addrs, prepended)) => {
                    tracing::info!(vips = addrs.len(), prepended, "announcing VIPs");
                    let attributes = if *prepended { &longer } else { &normal };
                    shared
                        .bgp
                        .set_desired(announced_routes(&shared.config, addrs, attributes));
                }
                Err(why) => {
                    tracing::warn!(reason = ?why, "withdrawing VIPs");
                    shared.bgp.set_desired(DesiredRoutes::new());
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
