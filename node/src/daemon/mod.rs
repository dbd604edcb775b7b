//! The `lbnode` daemon: wiring only. It starts consensus, the data plane,
//! BGP, health checks, metrics and the admin API in order ([`run`]), and
//! takes them down in one place (`stop`).
//!
//! Data flows one way: Raft log -> applied state -> Maglev tables -> BPF maps
//! ([`dataplane::sync_loop`]). The BGP announcement follows from the node's
//! readiness ([`announce::announce_loop`]).

pub mod admin_handler;
pub mod admin_registration;
pub mod announce;
pub mod dataplane;
pub mod health_monitor;
mod shared;
pub mod telemetry;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{anyhow, Context};
use edgelb_bgp::{BgpSpeaker, DesiredRoutes};
use edgelb_consensus::{ClusterSecret, ConsensusConfig, ConsensusNode, Timeouts};
use tokio::{
    net::TcpListener,
    sync::{watch, Mutex},
    task::JoinHandle,
};
use xdp_fwd::{AttachMode, Forwarder, LoadOptions};

pub use self::shared::Shared;
use self::{
    announce::DrainProgress,
    dataplane::{DataPlane, DataPlaneReader, LocalSettings, Programmed},
};
use crate::config::{read_secret, Config, XdpAttachMode};

/// How the daemon was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// SIGTERM / SIGINT: withdraw, drain while forwarding, detach, exit.
    Shutdown,
    /// SIGUSR2: exit for a restart, leaving XDP attached and its maps pinned
    /// (the next process adopts them) and BGP routes held by graceful restart.
    Restart,
}

/// Runs the daemon until `stop_requests` yields a [`StopKind`]; returns
/// after the stop sequence.
pub async fn run(
    config: Config,
    mut stop_requests: watch::Receiver<Option<StopKind>>,
) -> anyhow::Result<()> {
    let secrets = read_secrets(&config)?;
    let admin_listener = open_endpoints(&config).await?;
    let http_listener = open_http(&config).await?;
    let (dataplane, adopted) = load_dataplane(&config)?;
    let consensus = start_consensus(&config, secrets.cluster).await?;
    bootstrap_cluster(&config, &consensus).await;
    let bgp = start_bgp(&config, adopted).await?;

    let dataplane = Arc::new(Mutex::new(dataplane));
    let (programmed_tx, programmed_rx) = watch::channel(Programmed::default());
    let (announcing_tx, announcing_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: config.clone(),
        consensus,
        dataplane: DataPlaneReader::new(&dataplane),
        programmed: programmed_rx,
        bgp,
        announcing: announcing_rx,
        attached: std::sync::Mutex::new(Vec::new()),
        admin_token: secrets.admin_token.clone(),
    });

    warn_if_forwarding_off(&config);
    attach_xdp(&shared, &dataplane).await?;
    let mut running = spawn_tasks(
        shared,
        dataplane,
        admin_listener,
        secrets.admin_token,
        programmed_tx,
        announcing_tx,
        adopted,
    );
    if let Some(listener) = http_listener {
        running.tasks.push(spawn_http(&running, listener));
    }

    let kind = wait_for_stop(&mut stop_requests).await;
    stop(kind, running).await
}

/// The secrets the daemon needs, read from their files.
struct Secrets {
    /// Authenticates every Raft message.
    cluster: Vec<u8>,
    /// What `lbctl` and other nodes present to the admin API.
    admin_token: String,
}

/// Start step 1: read the secrets first, so a missing or short file fails
/// before anything is bound, loaded or attached.
fn read_secrets(config: &Config) -> anyhow::Result<Secrets> {
    let cluster = read_secret(&config.cluster.secret_file)?;
    let admin_token = String::from_utf8(read_secret(&config.admin.token_file)?).map_err(|_| {
        anyhow!(
            "{}: the admin token must be UTF-8",
            config.admin.token_file.display()
        )
    })?;
    Ok(Secrets {
        cluster,
        admin_token,
    })
}

/// Start step 2: bind the admin API and the metrics endpoint, so an address
/// already in use fails before the data plane is touched.
async fn open_endpoints(config: &Config) -> anyhow::Result<TcpListener> {
    let admin_listener = crate::admin::server::bind(config.admin.listen)
        .await
        .with_context(|| format!("admin.listen {}", config.admin.listen))?;
    if let Some(addr) = config.metrics.listen {
        telemetry::install_prometheus(addr)?;
    }
    Ok(admin_listener)
}

/// Start step 2b: bind the JSON HTTP API if `http.listen` is set.
async fn open_http(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.http.listen else {
        return Ok(None);
    };
    let listener = crate::http::server::bind(addr)
        .await
        .with_context(|| format!("http.listen {addr}"))?;
    Ok(Some(listener))
}

/// Start step 9b: serve the HTTP API through an admin handler of its own
/// (so its batches take the admin write path), stopped with the tasks.
fn spawn_http(running: &Running, listener: TcpListener) -> JoinHandle<()> {
    let shared = &running.shared;
    let api = crate::http::Api::new(
        admin_handler::Handler::new(shared.clone()),
        &shared.admin_token,
        shared.config.http.max_body_bytes,
    );
    tracing::info!(listen = ?shared.config.http.listen, "HTTP API listening");
    tokio::spawn(crate::http::server::serve(
        listener,
        Arc::new(api),
        running.task_stop.subscribe(),
    ))
}

/// Start step 3: load the forwarder (or adopt the maps a previous process
/// pinned, in a hot restart) and program nothing yet: the tables come from
/// the applied state once consensus runs. Returns whether maps were adopted.
fn load_dataplane(config: &Config) -> anyhow::Result<(DataPlane, bool)> {
    let local = LocalSettings {
        source_v4: config
            .encap_source_v4()
            .map_err(|e| anyhow!("xdp.encap_source_v4: {e}"))?,
        source_v6: config
            .encap_source_v6()
            .map_err(|e| anyhow!("xdp.encap_source_v6: {e}"))?,
        udp_timeout: Duration::from_secs(u64::from(config.xdp.udp_flow_timeout_secs)),
        flood_threshold: config
            .xdp
            .flood_threshold
            .threshold()
            .map_err(|e| anyhow!("xdp.flood_threshold: {e}"))?,
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
    Ok((DataPlane::new(forwarder, local), adopted))
}

/// Start step 4: join (or restart as) this node's Raft member; its applied
/// state is what the data plane will be programmed from.
async fn start_consensus(config: &Config, secret: Vec<u8>) -> anyhow::Result<ConsensusNode> {
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
    ConsensusNode::start(cc).await.context("starting consensus")
}

/// Start step 5: on a brand-new cluster, the initial member with the lowest
/// id initializes it (exactly one node must, and every node can tell which).
async fn bootstrap_cluster(config: &Config, consensus: &ConsensusNode) {
    let members = &config.cluster.initial_members;
    let Some(first) = members.iter().map(|m| m.id).min() else {
        return;
    };
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

/// Start step 6: open the BGP sessions, announcing nothing until the
/// announce loop decides. After a hot restart (`adopted`) the routers are
/// asked to hold our previous routes meanwhile.
async fn start_bgp(config: &Config, adopted: bool) -> anyhow::Result<BgpSpeaker> {
    BgpSpeaker::start(announce::speaker_config(config, adopted))
        .await
        .context("starting BGP")
}

/// Start step 7: warn where the kernel will drop what the forwarder sends.
/// The forwarder routes encapsulated packets with bpf_fib_lookup, which
/// fails (counted as drop_fib) where forwarding is off.
fn warn_if_forwarding_off(config: &Config) {
    for iface in &config.xdp.interfaces {
        for family in ["ipv4", "ipv6"] {
            let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
            if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
                tracing::warn!(%path, "forwarding is off: encapsulated packets will be dropped (set it to 1)");
            }
        }
    }
}

/// Start step 8: attach XDP to every configured interface, after the maps
/// have a program to serve, and record the attachments for `lbctl status`
/// and the readiness check.
async fn attach_xdp(shared: &Shared, dataplane: &Mutex<DataPlane>) -> anyhow::Result<()> {
    let xdp = &shared.config.xdp;
    let mut dp = dataplane.lock().await;
    for iface in &xdp.interfaces {
        dp.attach(iface, attach_mode(xdp.mode))
            .with_context(|| format!("attaching XDP to {iface}"))?;
    }
    let mut attached = shared.attached.lock().unwrap_or_else(|e| e.into_inner());
    *attached = xdp
        .interfaces
        .iter()
        .map(|i| (i.clone(), mode_name(xdp.mode).to_owned()))
        .collect();
    drop(attached);
    tracing::info!(interfaces = ?xdp.interfaces, mode = mode_name(xdp.mode), "XDP attached");
    Ok(())
}

/// The running daemon: what [`stop`] takes down.
struct Running {
    shared: Arc<Shared>,
    /// The writable data plane (the sync loop holds the other handle).
    dataplane: Arc<Mutex<DataPlane>>,
    drain: Arc<DrainProgress>,
    /// Tells every task to return.
    task_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start step 9: spawn the long-running tasks. The sync loop is the only
/// one given the writable data plane.
fn spawn_tasks(
    shared: Arc<Shared>,
    dataplane: Arc<Mutex<DataPlane>>,
    admin_listener: TcpListener,
    admin_token: String,
    programmed: watch::Sender<Programmed>,
    announcing: watch::Sender<bool>,
    adopted: bool,
) -> Running {
    let (task_stop_tx, task_stop) = watch::channel(false);
    let drain = Arc::new(DrainProgress::default());
    let mut tasks = vec![
        tokio::spawn(dataplane::sync_loop(
            dataplane.clone(),
            shared.consensus.subscribe(),
            programmed,
            task_stop.clone(),
        )),
        tokio::spawn(announce::announce_loop(
            shared.clone(),
            announcing,
            drain.clone(),
            announce::restart_grace_deadline(&shared.config, adopted),
            task_stop.clone(),
        )),
        tokio::spawn(telemetry::metrics_loop(shared.clone(), task_stop.clone())),
        tokio::spawn(crate::admin::server::serve(
            admin_listener,
            Arc::new(admin_token.into_bytes()),
            Arc::new(admin_handler::Handler::new(shared.clone())),
            task_stop.clone(),
        )),
    ];
    if shared.config.health.enabled {
        tasks.push(tokio::spawn(health_monitor::run(
            shared.clone(),
            task_stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(admin_registration::register_admin_addr(
        shared.clone(),
        task_stop,
    )));
    Running {
        shared,
        dataplane,
        drain,
        task_stop: task_stop_tx,
        tasks,
    }
}

/// Waits for a stop request. A request channel that closes without one
/// (the signal task is gone) counts as a shutdown.
async fn wait_for_stop(requests: &mut watch::Receiver<Option<StopKind>>) -> StopKind {
    loop {
        if let Some(kind) = *requests.borrow_and_update() {
            return kind;
        }
        if requests.changed().await.is_err() {
            return StopKind::Shutdown;
        }
    }
}

/// Takes the daemon down, whatever the kind of stop: every difference
/// between a shutdown and a restart is decided here.
async fn stop(kind: StopKind, running: Running) -> anyhow::Result<()> {
    let Running {
        shared,
        dataplane,
        drain,
        task_stop,
        tasks,
    } = running;
    tracing::info!(?kind, "stopping");

    // 1. Drain (shutdown only): withdraw, keep forwarding while routers
    //    move flows away. A restart keeps the routes: routers hold them.
    if kind == StopKind::Shutdown {
        let config = &shared.config;
        if config.drain.prepend_secs > 0 && *shared.announcing.borrow() {
            // First make this node's paths longer than its peers': routers
            // move flows away while our route still backs them up.
            // (The announce loop re-announces with the longer path.)
            drain.start_prepending();
            tracing::info!(
                secs = config.drain.prepend_secs,
                "AS_PATH prepended; draining before withdrawal"
            );
            tokio::time::sleep(Duration::from_secs(config.drain.prepend_secs)).await;
        }
        drain.start_draining();
        shared.bgp.set_desired(DesiredRoutes::new());
        tracing::info!(period = ?config.drain_period(), "routes withdrawn; draining");
        tokio::time::sleep(config.drain_period()).await;
    }

    // 2. Stop the tasks, each given a bounded time to return.
    let _ = task_stop.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // A task that did not return in time still holds the state: stopping
    // the parts under it would pull them from a running task.
    let still_held = || anyhow!("a task still holds the daemon state");
    let Shared {
        config,
        consensus,
        bgp,
        dataplane: reader,
        ..
    } = Arc::try_unwrap(shared).map_err(|_| still_held())?;
    drop(reader);
    let mut dataplane = Arc::try_unwrap(dataplane)
        .map_err(|_| still_held())?
        .into_inner();

    // 3. BGP: a shutdown closes the sessions (Cease); a restart sends no
    //    Cease, so routers keep our routes across it (RFC 4724).
    match kind {
        StopKind::Shutdown => bgp.shutdown().await,
        StopKind::Restart => bgp.abandon(),
    }

    // 4. XDP: a shutdown detaches and removes the pins; a restart leaves
    //    the program attached and its maps pinned for the next process.
    if kind == StopKind::Shutdown {
        for iface in &config.xdp.interfaces {
            if let Err(e) = dataplane.detach(iface) {
                tracing::warn!(%iface, error = %e, "detach failed");
            }
        }
        if let Err(e) = Forwarder::remove_pins(&config.xdp.pin_dir) {
            tracing::warn!(error = %e, "removing pinned maps failed");
        }
        tracing::info!("XDP detached");
    }

    // 5. Consensus last: the log and vote are flushed on the way out.
    consensus.shutdown().await.context("stopping consensus")?;
    tracing::info!("stopped");
    Ok(())
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
