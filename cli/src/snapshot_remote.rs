//! `tapedeck snapshot push|pull|list`: snapshots by id, kept by the collector
//! (`/v1/snapshots` on its HTTP port; `tapedeck_mesh::snapshots` is the client).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;
use tapedeck_mesh::snapshots::Client;

/// Where the collector's snapshot API is.
#[derive(Debug, Args)]
pub(crate) struct RemoteArgs {
    /// The collector's HTTP port (`http://HOST:PORT`, 9464 by default: the port of /metrics),
    /// e.g. `http://tapedeck-collector.tapedeck:9464` in the cluster or
    /// `http://127.0.0.1:9464` through `kubectl -n tapedeck port-forward svc/tapedeck-collector
    /// 9464`.
    #[arg(long, env = "TAPEDECK_COLLECTOR_HTTP", value_name = "URL")]
    collector: String,
    /// Bearer token (the collector's --token).
    #[arg(
        long,
        env = "TAPEDECK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl RemoteArgs {
    fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.collector, self.token.clone())?)
    }
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The snapshot directory (checked with `tapedeck snapshot validate`'s reader first).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Also write the id to this file (the operator's cut Job writes it to
    /// `/dev/termination-log`, where the operator reads it).
    #[arg(long, env = "TAPEDECK_ID_FILE", value_name = "FILE")]
    id_file: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The snapshot id (`tapedeck snapshot list` shows them).
    #[arg(value_name = "ID")]
    id: String,
    /// The directory to write the snapshot to.
    #[arg(long, short, env = "TAPEDECK_OUT", value_name = "DIR")]
    out: PathBuf,
    /// Replace --out when it exists and is not empty.
    #[arg(long, env = "TAPEDECK_FORCE")]
    force: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print the listing as JSON (`{"snapshots": [snapshot.json without token rules, …]}`).
    #[arg(long, env = "TAPEDECK_JSON")]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub(crate) async fn push(args: PushArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let pushed = client
        .push(&args.dir)
        .await
        .with_context(|| format!("pushing {}", args.dir.display()))?;
    if let Some(path) = &args.id_file {
        std::fs::write(path, &pushed.id)
            .with_context(|| format!("writing the id to {}", path.display()))?;
    }
    println!("{}", pushed.id);
    if pushed.created {
        eprintln!("stored snapshot {} at {}", pushed.id, args.remote.collector);
    } else {
        eprintln!(
            "snapshot {} was already stored at {} (same files)",
            pushed.id, args.remote.collector
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn pull(args: PullArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let manifest = client
        .pull(&args.id, &args.out, args.force)
        .await
        .with_context(|| format!("pulling snapshot {}", args.id))?;
    eprintln!(
        "snapshot {} written to {} ({} inbound, {} outbound, {} host(s))",
        manifest.id,
        args.out.display(),
        manifest.counts.inbound,
        manifest.counts.outbound,
        manifest.hosts.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(args: ListArgs) -> Result<ExitCode> {
    let client = args.remote.client()?;
    let snapshots = client.list().await.context("listing snapshots")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "snapshots": snapshots }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if snapshots.is_empty() {
        eprintln!("no snapshots at {}", args.remote.collector);
    }
    for m in &snapshots {
        let hosts: Vec<&str> = m.hosts.iter().map(|h| h.host.as_str()).collect();
        println!(
            "{}  {}  {} .. {}  {} inbound  {} outbound  hosts: {}",
            m.id,
            m.service,
            tapedeck_har::time::format_exact(m.window.from.0),
            tapedeck_har::time::format_exact(m.window.to.0),
            m.counts.inbound,
            m.counts.outbound,
            if hosts.is_empty() {
                "-".to_owned()
            } else {
                hosts.join(",")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
