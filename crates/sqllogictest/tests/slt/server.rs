//! A fresh Tidemark server for one test file: its own database, data
//! directory and ephemeral port, all gone when the runtime it runs on is
//! dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tidemark_server::{Database, DatabaseConfig, StateBackend};
use tokio::net::TcpListener;

/// A running server; its tasks live on the runtime that started it.
pub struct TestServer {
    pub addr: SocketAddr,
    data_dir: PathBuf,
}

impl TestServer {
    /// Starts a database and a pgwire listener on `127.0.0.1:0`; must be
    /// called inside the tokio runtime that is to run it.
    pub async fn start(parallelism: usize) -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "tidemark-slt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover from an earlier, killed run must not leak state in.
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let db = Database::start(DatabaseConfig {
            data_dir: data_dir.clone(),
            parallelism,
            checkpoint_interval: Duration::from_secs(1),
            state_backend: StateBackend::Memory,
        })
        .context("cannot start the database")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(tidemark_server::pgwire::serve(listener, Arc::new(db)));
        Ok(Self { addr, data_dir })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
