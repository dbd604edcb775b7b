//! `lbnode`: the EdgeLB node daemon. See `lbnode --help`.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgelb_node::{
    config::Config,
    daemon::{self, telemetry, StopKind},
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

/// EdgeLB node daemon: Raft member, XDP forwarder, BGP speaker.
#[derive(Debug, Parser)]
#[command(name = "lbnode", version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lbnode: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lbnode: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lbnode: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    tokio::spawn(async move {
        let kind = tokio::select! {
            _ = term.recv() => StopKind::Shutdown,
            _ = int.recv() => StopKind::Shutdown,
            _ = usr2.recv() => StopKind::Restart,
        };
        let _ = stop_tx.send(Some(kind));
        // Keep the sender alive so the daemon sees the value.
        std::future::pending::<()>().await;
    });
    daemon::run(config, stop_rx).await
}
