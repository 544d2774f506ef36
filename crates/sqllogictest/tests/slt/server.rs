//! A Tidemark server for one test file: its own database, data directory and
//! ephemeral port. Its tasks live on the runtime that started it; stopping it
//! and dropping that runtime ends it, and
//! [`TestServer::start`] on the same directory starts it again from what it
//! stored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tidemark_server::{Database, DatabaseConfig, StateBackend};
use tokio::net::TcpListener;

/// A data directory that is deleted when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tidemark-slt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover from an earlier, killed run must not leak state in.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    db: Arc<Database>,
}

impl TestServer {
    /// Starts a database on `data_dir` and a pgwire listener on
    /// `127.0.0.1:0`; must be called inside the tokio runtime that is to run it.
    pub async fn start(
        data_dir: &Path,
        parallelism: usize,
        state_backend: StateBackend,
    ) -> anyhow::Result<Self> {
        let config = DatabaseConfig {
            data_dir: data_dir.to_path_buf(),
            parallelism,
            checkpoint_interval: Duration::from_secs(1),
            state_backend,
            state_cache_bytes: 64 << 20,
            // On RocksDB (the recovery modes) a GROUP BY keeps no group in
            // memory past its commit, so every later row reads its group back.
            operator_cache_bytes: match state_backend {
                StateBackend::RocksDb => 0,
                StateBackend::Memory => 64 << 20,
            },
            // On RocksDB a view over a relation of more than one page
            // receives it over several checkpoints.
            backfill_rows: match state_backend {
                StateBackend::RocksDb => 1,
                StateBackend::Memory => tidemark_server::DEFAULT_BACKFILL_ROWS,
            },
            restore_from: None,
            retain: tidemark_server::RetainPolicy::default(),
        };
        // The previous server's actors run on threads of their own, which
        // stop in the background once its runtime is dropped: the store is
        // closed (and its lock let go) a moment later, not at once.
        let mut attempts = 0;
        let db = loop {
            match Database::start(config.clone()).await {
                Ok(db) => break db,
                Err(e) if e.message.contains("in use by another process") && attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => anyhow::bail!("cannot start the database: {}", e.message),
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let db = Arc::new(db);
        tokio::spawn(tidemark_server::pgwire::serve(listener, Arc::clone(&db)));
        Ok(Self { addr, db })
    }

    /// Stops the server's threads, without a final checkpoint (what was not
    /// committed is lost, as in a crash). The test process must not exit
    /// while threads that used RocksDB are still ending.
    pub async fn stop(&self) {
        self.db.shutdown().await;
    }
}
