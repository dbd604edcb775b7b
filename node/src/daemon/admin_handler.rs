//! The daemon's answers to admin requests.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use edgelb_consensus::{Command, ConsensusError, Role};

use super::{dataplane::check_capacity, Shared};
use crate::{
    admin::{
        client::AdminClient,
        protocol::{
            BgpPeerReport, ClusterStatus, LookupResult, MemberInfo, NodeReport, Request, Response,
            StatsReport,
        },
        server::AdminHandler,
    },
    tables::digest_hex,
};

/// Per-node timeout when collecting the cluster status.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers admin requests from the daemon's shared state.
pub struct Handler {
    shared: Arc<Shared>,
}

impl Handler {
    /// A handler over the daemon's state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn write(&self, command: Command) -> Response {
        match self.submit(command).await {
            Ok(version) => Response::Written { version },
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        }
    }

    /// Writes one table command (a batch included) as every admin write
    /// is made: checked against the data plane's capacity here, then
    /// committed through Raft (a follower forwards it to the leader).
    /// Returns the table version after the write.
    pub async fn submit(&self, command: Command) -> Result<u64, WriteRefusal> {
        // A table no node can program would withdraw every node's routes:
        // refuse it here, before it reaches the log. (Checked against this
        // node's applied state; the leader still validates the command.)
        let mut candidate = (*self.shared.consensus.state()).clone();
        if candidate.apply(&command).is_ok() {
            let capacity = self.shared.dataplane.capacity().await;
            if let Err(e) = check_capacity(&candidate, capacity) {
                return Err(WriteRefusal::Capacity(e.to_string()));
            }
        }
        match self.shared.consensus.write(command).await {
            Ok(receipt) => Ok(receipt.version),
            Err(e) => Err(WriteRefusal::Consensus(e)),
        }
    }

    fn local_report(&self) -> NodeReport {
        let s = &self.shared;
        let status = s.consensus.status();
        let programmed = s.programmed.borrow().clone();
        NodeReport {
            id: status.id,
            role: role_name(status.role).into(),
            term: status.term,
            leader: status.leader,
            applied_index: status.applied_index,
            table_version: programmed.version,
            table_digest: digest_hex(programmed.digest),
            xdp: s.attached.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            announcing: *s.announcing.borrow(),
            bgp_peers: s
                .bgp
                .peers()
                .into_iter()
                .map(|p| BgpPeerReport {
                    address: p.address,
                    state: format!("{:?}", p.state),
                    prefixes: p.prefixes_announced,
                })
                .collect(),
        }
    }

    async fn cluster_status(&self) -> Response {
        let status = self.shared.consensus.status();
        let mut nodes = Vec::new();
        for id in status.nodes.keys().copied() {
            if id == status.id {
                nodes.push((id, Ok(self.local_report())));
                continue;
            }
            // The address the node registered through Raft, else the one
            // the configuration names for an initial member.
            let registered = self.shared.consensus.state().admin_addrs.get(&id).copied();
            let admin = registered.or_else(|| {
                self.shared
                    .config
                    .cluster
                    .initial_members
                    .iter()
                    .find(|m| m.id == id)
                    .and_then(|m| m.admin)
            });
            let report = match admin {
                None => Err(
                    "admin address unknown (not registered yet, not in cluster.initial_members)"
                        .to_owned(),
                ),
                Some(addr) => self.peer_report(&addr.to_string()).await,
            };
            nodes.push((id, report));
        }
        Response::Status(ClusterStatus {
            leader: status.leader,
            version: self.shared.consensus.state().version,
            nodes,
        })
    }

    async fn peer_report(&self, addr: &str) -> Result<NodeReport, String> {
        let mut client = AdminClient::connect(addr, &self.shared.admin_token, PEER_STATUS_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        match client
            .request(&Request::LocalStatus)
            .await
            .map_err(|e| e.to_string())?
        {
            Response::LocalStatus(r) => Ok(r),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn stats(&self) -> Response {
        let state = self.shared.consensus.state();
        let stats = match self.shared.dataplane.stats().await {
            Ok(s) => s,
            Err(e) => {
                return Response::Error {
                    message: e.to_string(),
                }
            }
        };
        let mut report = StatsReport::default();
        for key in state.vips.keys() {
            let t = stats.vips.get(key).copied().unwrap_or_default();
            report.vips.push((*key, t.packets, t.bytes));
        }
        let addresses = state.backend_addresses();
        for addr in addresses {
            let t = stats.backends.get(&addr).copied().unwrap_or_default();
            report.backends.push((addr, t.packets, t.bytes));
        }
        report.drops = stats
            .named()
            .filter(|(n, _)| n.starts_with("drop"))
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        report.cache = stats
            .named()
            .filter(|(n, _)| {
                n.starts_with("lru_") || n.starts_with("flood_") || n.starts_with("second_hop_")
            })
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        Response::Stats(report)
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
    }
}

/// Why a write was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteRefusal {
    /// The data plane could not hold the resulting table; nothing was sent.
    #[error("refused: {0}")]
    Capacity(String),
    /// Consensus refused the command or could not commit it (see
    /// [`ConsensusError`] for which outcomes are certain).
    #[error("{0}")]
    Consensus(ConsensusError),
}

/// A batch entry that is not a table write (a read, a membership change,
/// another batch): the batch is refused before it reaches the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct NotATableWrite {
    /// 0-based position of the entry.
    pub index: usize,
    /// The entry's `op`.
    pub op: &'static str,
}

impl NotATableWrite {
    fn message(&self) -> String {
        let (index, op) = (self.index, self.op);
        if op == "batch" {
            format!("batch entry {index} (batch): a batch cannot contain another batch")
        } else {
            format!("batch entry {index} ({op}), field `op`: `{op}` is not a table write")
        }
    }
}

/// The one Raft command of an admin batch, or why the batch is refused
/// before it reaches the log (an entry that is not a table write).
pub fn batch_command(
    expect_version: Option<u64>,
    requests: &[Request],
) -> Result<Command, NotATableWrite> {
    let commands = requests
        .iter()
        .enumerate()
        .map(|(index, r)| {
            r.table_command()
                .ok_or(NotATableWrite { index, op: r.op() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command::Batch {
        expect_version,
        commands,
    })
}

fn unreachable_write() -> Response {
    Response::Error {
        message: "internal error: a write without a table command".into(),
    }
}

fn error(e: ConsensusError) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

impl AdminHandler for Handler {
    fn handle(&self, request: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            if let Some(command) = request.table_command() {
                return self.write(command).await;
            }
            match request {
                Request::Status => self.cluster_status().await,
                Request::LocalStatus => Response::LocalStatus(self.local_report()),
                Request::Batch {
                    expect_version,
                    requests,
                } => match batch_command(expect_version, &requests) {
                    Ok(command) => self.write(command).await,
                    Err(e) => Response::Error {
                        message: e.to_string(),
                    },
                },
                // Answered by `table_command` above.
                Request::VipAdd { .. }
                | Request::VipUpdate { .. }
                | Request::VipRemove { .. }
                | Request::BackendAdd { .. }
                | Request::BackendRemove { .. }
                | Request::BackendSetWeight { .. }
                | Request::BackendSetState { .. }
                | Request::SettingsSet { .. }
                | Request::ConnectionSettingsSet { .. } => unreachable_write(),
                Request::VipList => match self.shared.consensus.read_current().await {
                    Ok(state) => Response::Vips {
                        version: state.version,
                        vips: state.vips.values().cloned().collect(),
                        settings: state.settings,
                        connection: state.connection,
                    },
                    Err(e) => error(e),
                },
                Request::NodeList => {
                    let s = self.shared.consensus.status();
                    let state = self.shared.consensus.state();
                    Response::Nodes {
                        nodes: s
                            .nodes
                            .iter()
                            .map(|(id, addr)| MemberInfo {
                                id: *id,
                                addr: addr.clone(),
                                voter: s.voters.contains(id),
                                admin: state.admin_addrs.get(id).copied(),
                            })
                            .collect(),
                    }
                }
                Request::NodeAdd { id, addr, voter } => {
                    if let Err(e) = self.shared.consensus.add_learner(id, addr).await {
                        return error(e);
                    }
                    if voter {
                        if let Err(e) = self.shared.consensus.promote_voter(id).await {
                            return error(e);
                        }
                    }
                    Response::Written {
                        version: self.shared.consensus.state().version,
                    }
                }
                Request::NodeRemove { id }
                    if !self.shared.consensus.status().nodes.contains_key(&id) =>
                {
                    Response::Error {
                        message: format!("node {id} is not a member of the cluster"),
                    }
                }
                Request::NodeRemove { id } => match self.shared.consensus.remove_node(id).await {
                    Ok(_) => Response::Written {
                        version: self.shared.consensus.state().version,
                    },
                    Err(e) => error(e),
                },
                Request::Stats => self.stats().await,
                Request::Lookup {
                    src,
                    sport,
                    dst,
                    dport,
                    protocol,
                } => {
                    let state = self.shared.consensus.state();
                    let exact = edgelb_consensus::VipKey {
                        address: dst,
                        port: dport,
                        protocol,
                    };
                    let any = edgelb_consensus::VipKey { port: 0, ..exact };
                    let Some(key) = [exact, any]
                        .into_iter()
                        .find(|k| state.vips.contains_key(k))
                    else {
                        return Response::Error {
                            message: format!("no VIP matches {exact}"),
                        };
                    };
                    match self.shared.dataplane.lookup(&key, src, sport).await {
                        Ok(found) => Response::Lookup(LookupResult {
                            vip: key,
                            hash: found.hash,
                            slot: found.slot,
                            backend: found.backend,
                            previous_backend: found.previous_backend,
                        }),
                        Err(e) => Response::Error {
                            message: e.to_string(),
                        },
                    }
                }
            }
        })
    }
}
