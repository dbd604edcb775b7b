//! `lbctl`: the EdgeLB admin CLI. See `lbctl --help`.

use std::{process::ExitCode, time::Duration};

use anyhow::{anyhow, bail, Context};
use clap::{CommandFactory, Parser};
use edgelb_consensus::{
    Backend, BackendState, ClusterSettings, ClusterState, ConnectionSettings, Encapsulation,
    FloodAdmission, VipFlags,
};
use edgelb_node::{
    admin::{
        client::AdminClient,
        protocol::{Request, Response},
    },
    cli::{
        args::{
            ApplyArgs, BackendCommand, Cli, CliCommand, EncapArg, NodeCommand, SettingsCommand,
            VipArgs, VipCommand,
        },
        parse, render,
    },
    desired::{self, DesiredError, DesiredState},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lbctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A bad desired-state file is bad input, like a bad argument (which
        // clap answers with 2): nothing was sent.
        Err(e) if e.downcast_ref::<DesiredError>().is_some() => {
            eprintln!("lbctl: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("lbctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An authenticated connection to the node `--node` names.
async fn connect(cli: &Cli) -> anyhow::Result<AdminClient> {
    let token_file = cli
        .token_file
        .as_ref()
        .ok_or_else(|| anyhow!("no admin token: pass --token-file or set LBCTL_TOKEN_FILE"))?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading token file {}", token_file.display()))?;
    let limit = Duration::from_millis(cli.timeout_ms.max(1));
    Ok(AdminClient::connect(&cli.node, token.trim(), limit).await?)
}

/// The cluster's table as of a linearizable read at the leader (VIPs,
/// backends, settings and version; health observations are not included).
async fn current_state(client: &mut AdminClient) -> anyhow::Result<ClusterState> {
    match client.request(&Request::VipList).await? {
        Response::Vips {
            version,
            vips,
            settings,
            connection,
        } => Ok(ClusterState {
            version,
            settings,
            connection,
            vips: vips.into_iter().map(|v| (v.key, v)).collect(),
            ..Default::default()
        }),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// `lbctl apply`: read the file, diff against the cluster, send one batch.
async fn apply(cli: &Cli, args: &ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let desired = desired::parse(&text, &args.file)?;
    let mut client = connect(cli).await?;
    let current = current_state(&mut client).await?;
    if let Some(expected) = args.expect_version {
        if expected != current.version {
            bail!(
                "the table is at version {}, not the expected {expected}: it changed meanwhile",
                current.version
            );
        }
    }
    let plan = desired::plan(&current, &desired, args.prune)?;
    // The plan is printed once the outcome is known: on failure only the
    // error is (nothing changed).
    let mut written = None;
    if !args.dry_run && !plan.commands.is_empty() {
        let requests = plan
            .commands
            .iter()
            .map(|c| {
                Request::for_command(c)
                    .ok_or_else(|| anyhow!("internal: a plan holds {}", c.name()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let batch = Request::Batch {
            expect_version: args.expect_version,
            requests,
        };
        match client.request(&batch).await? {
            Response::Written { version } => written = Some(version),
            Response::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    }
    if cli.json {
        let version = written.unwrap_or(plan.from_version);
        let report = render::plan_json(&plan, args.dry_run, version);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render::plan(&plan).trim_end());
        if let Some(version) = written {
            println!("ok: applied at table version {version}");
        }
    }
    Ok(())
}

/// `lbctl settings connection`: the options given over the cluster's
/// current values, checked here (nothing is sent when one is out of range).
async fn connection_settings(
    cli: &Cli,
    window: Option<u32>,
    flood: Option<FloodAdmission>,
) -> anyhow::Result<()> {
    if let Some(w) = window {
        let probe = ConnectionSettings {
            second_hop_window_secs: w,
            ..Default::default()
        };
        edgelb_consensus::command::check_connection_settings(&probe)?;
    }
    let mut client = connect(cli).await?;
    let current = match client.request(&Request::VipList).await? {
        Response::Vips { connection, .. } => connection,
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    };
    let settings = ConnectionSettings {
        second_hop_window_secs: window.unwrap_or(current.second_hop_window_secs),
        flood_threshold: flood.unwrap_or(current.flood_threshold),
    };
    match client
        .request(&Request::ConnectionSettingsSet { settings })
        .await?
    {
        Response::Written { version } => println!("ok: applied at table version {version}"),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(())
}

/// `lbctl export`.
async fn export(cli: &Cli, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut client = connect(cli).await?;
    let current = current_state(&mut client).await?;
    let text = desired::render(&DesiredState {
        settings: Some(current.settings),
        connection: Some(current.connection),
        vips: current.vips,
    });
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn vip_settings(o: &VipArgs) -> anyhow::Result<(VipFlags, Encapsulation)> {
    let encapsulation = match o.encap {
        EncapArg::Ipip => Encapsulation::IpIp,
        EncapArg::Gue if o.gue_port == 0 => bail!("--gue-port must not be 0"),
        EncapArg::Gue => Encapsulation::Gue { port: o.gue_port },
    };
    let flags = VipFlags {
        hash_without_source_port: o.hash_no_source_port,
        hash_dst_port_only: o.hash_dst_port_only,
    };
    Ok((flags, encapsulation))
}

fn vip(text: &str) -> anyhow::Result<edgelb_consensus::VipKey> {
    parse::vip_key(text).map_err(|e| anyhow!("bad VIP {e}"))
}

/// Turns the command line into the request(s) to send.
fn request_for(command: &CliCommand) -> anyhow::Result<Request> {
    Ok(match command {
        CliCommand::Status => Request::Status,
        CliCommand::Vip(VipCommand::Add { vip: v, args }) => {
            let (flags, encapsulation) = vip_settings(args)?;
            Request::VipAdd {
                key: vip(v)?,
                flags,
                encapsulation,
            }
        }
        CliCommand::Vip(VipCommand::Update { vip: v, args }) => {
            let (flags, encapsulation) = vip_settings(args)?;
            Request::VipUpdate {
                key: vip(v)?,
                flags,
                encapsulation,
            }
        }
        CliCommand::Vip(VipCommand::Remove { vip: v }) => Request::VipRemove { key: vip(v)? },
        CliCommand::Vip(VipCommand::List) | CliCommand::Backend(BackendCommand::List { .. }) => {
            Request::VipList
        }
        CliCommand::Backend(BackendCommand::Add {
            vip: v,
            address,
            weight,
        }) => Request::BackendAdd {
            vip: vip(v)?,
            backend: Backend {
                address: *address,
                weight: *weight,
                state: BackendState::Active,
            },
        },
        CliCommand::Backend(BackendCommand::Remove { vip: v, address }) => Request::BackendRemove {
            vip: vip(v)?,
            address: *address,
        },
        CliCommand::Backend(BackendCommand::SetWeight {
            vip: v,
            address,
            weight,
        }) => Request::BackendSetWeight {
            vip: vip(v)?,
            address: *address,
            weight: *weight,
        },
        CliCommand::Backend(BackendCommand::Drain { vip: v, address }) => {
            Request::BackendSetState {
                vip: vip(v)?,
                address: *address,
                state: BackendState::Draining,
            }
        }
        CliCommand::Backend(BackendCommand::Undrain { vip: v, address }) => {
            Request::BackendSetState {
                vip: vip(v)?,
                address: *address,
                state: BackendState::Active,
            }
        }
        CliCommand::Backend(BackendCommand::Down { vip: v, address }) => Request::BackendSetState {
            vip: vip(v)?,
            address: *address,
            state: BackendState::Down,
        },
        CliCommand::Node(NodeCommand::List) => Request::NodeList,
        CliCommand::Node(NodeCommand::Add { id, addr, learner }) => {
            parse::socket_addr(addr).map_err(|e| anyhow!("bad node address {e}"))?;
            Request::NodeAdd {
                id: *id,
                addr: addr.clone(),
                voter: !learner,
            }
        }
        CliCommand::Node(NodeCommand::Remove { id }) => Request::NodeRemove { id: *id },
        CliCommand::Settings(SettingsCommand::Set {
            hash_seed,
            table_size,
        }) => Request::SettingsSet {
            settings: ClusterSettings {
                hash_seed: *hash_seed,
                table_size: *table_size,
            },
        },
        CliCommand::Stats { .. } => Request::Stats,
        // Not one request each: answered in `run` before this.
        CliCommand::Apply(_)
        | CliCommand::Export { .. }
        | CliCommand::Settings(SettingsCommand::Connection { .. })
        | CliCommand::Completions { .. }
        | CliCommand::Man => bail!("internal: no single request for this command"),
        CliCommand::Lookup { vip: v, from } => {
            let key = vip(v)?;
            let from = parse::socket_addr(from).map_err(|e| anyhow!("bad --from {e}"))?;
            if from.is_ipv4() != key.address.is_ipv4() {
                bail!("--from {from} and VIP {key} are of different address families");
            }
            Request::Lookup {
                src: from.ip(),
                sport: from.port(),
                dst: key.address,
                dport: key.port,
                protocol: key.protocol,
            }
        }
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        CliCommand::Apply(args) => return apply(&cli, args).await,
        CliCommand::Export { output } => return export(&cli, output.as_deref()).await,
        CliCommand::Settings(SettingsCommand::Connection {
            second_hop_window_secs,
            flood_threshold,
        }) => return connection_settings(&cli, *second_hop_window_secs, *flood_threshold).await,
        CliCommand::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "lbctl", &mut std::io::stdout());
            return Ok(());
        }
        CliCommand::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    // Validate everything local before touching the network.
    let request = request_for(&cli.command)?;
    if let CliCommand::Stats { interval } = cli.command {
        if !(0.1..=3600.0).contains(&interval) {
            bail!("--interval must be within 0.1..=3600 seconds");
        }
    }
    let mut client = connect(&cli).await?;
    let response = client.request(&request).await?;
    if let Response::Error { message } = &response {
        bail!("{message}");
    }
    let out = match (&cli.command, response) {
        (CliCommand::Stats { interval }, Response::Stats(before)) => {
            tokio::time::sleep(Duration::from_secs_f64(*interval)).await;
            let Response::Stats(after) = client.request(&Request::Stats).await? else {
                bail!("unexpected answer to the second stats sample");
            };
            if cli.json {
                serde_json::to_string_pretty(&serde_json::json!({
                    "interval_secs": interval, "before": before, "after": after
                }))?
            } else {
                render::stats(&before, &after, *interval)
            }
        }
        (CliCommand::Backend(BackendCommand::List { vip: v }), Response::Vips { vips, .. }) => {
            let key = vip(v)?;
            let found = vips
                .iter()
                .find(|x| x.key == key)
                .ok_or_else(|| anyhow!("unknown VIP {key}"))?;
            if cli.json {
                serde_json::to_string_pretty(found)?
            } else {
                render::backends(found)
            }
        }
        (_, response) if cli.json => serde_json::to_string_pretty(&response)?,
        (_, Response::Written { version }) => format!("ok: applied at table version {version}"),
        (_, Response::Status(s)) => render::status(&s),
        (_, Response::Vips { version, vips, .. }) => render::vips(version, &vips),
        (_, Response::Nodes { nodes }) => render::nodes(&nodes),
        (_, Response::Lookup(r)) => render::lookup(&r),
        (_, other) => serde_json::to_string_pretty(&other)?,
    };
    println!("{}", out.trim_end());
    Ok(())
}
