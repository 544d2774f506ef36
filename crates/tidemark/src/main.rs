//! The `tidemark` server binary: parses options, starts the database and
//! serves the Postgres protocol until Ctrl-C or SIGTERM.

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tidemark_server::Database;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How long a clean stop waits for its final checkpoint.
const FINAL_CHECKPOINT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}`: the whole cause chain on one line, without a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = cli.database_config()?;
    info!(
        data_dir = %config.data_dir.display(),
        parallelism = config.parallelism,
        checkpoint_interval = %humantime::format_duration(config.checkpoint_interval),
        state_backend = ?config.state_backend,
        "starting tidemark"
    );
    let db = match Database::start(config).await {
        Ok(db) => Arc::new(db),
        Err(e) => {
            let mut text = format!("cannot start the database: {}", e.message);
            if let Some(detail) = &e.detail {
                text.push_str(&format!(" ({detail})"));
            }
            anyhow::bail!(text)
        }
    };
    let listener = TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    info!("listening on {}", listener.local_addr()?);

    tokio::select! {
        served = tidemark_server::pgwire::serve(listener, Arc::clone(&db)) => served.context("server failed")?,
        signal = shutdown_signal() => {
            signal?;
            info!("shutting down: taking a final checkpoint");
            match db.final_checkpoint(FINAL_CHECKPOINT_PATIENCE).await {
                Ok(epoch) => info!(epoch, "final checkpoint committed"),
                Err(e) => warn!(error = %e.message, "stopping without a final checkpoint"),
            }
            db.shutdown().await;
        }
    }
    Ok(())
}

/// Resolves on the first Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("cannot watch Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}
