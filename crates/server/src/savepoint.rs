//! Savepoints: `CREATE SAVEPOINT '<dir>'` writes a consistent copy of the
//! store as of a checkpoint taken for it; `--restore-from <dir>` starts a
//! server on an empty data directory from such a copy.

use std::path::Path;
use std::sync::Arc;

use crate::database::{Database, Request};
use crate::error::{PgError, PgResult};
use crate::result::StatementResult;

impl Database {
    pub(crate) async fn create_savepoint(
        &self,
        req: &Request<'_>,
        dir: &str,
    ) -> PgResult<StatementResult> {
        if Path::new(dir).exists() {
            return Err(PgError::new(
                "58P02",
                format!("savepoint directory \"{dir}\" already exists"),
            ));
        }
        // Everything written before the statement is in the copy.
        let epoch = self.runtime.checkpoint().await.map_err(|e| req.engine(e))?;
        let store = Arc::clone(&self.store);
        let path = Path::new(dir).to_path_buf();
        let saved = tokio::task::spawn_blocking(move || store.savepoint(&path))
            .await
            .map_err(|e| PgError::new("XX000", format!("savepoint did not complete: {e}")))?;
        match saved {
            Ok(saved) => {
                tracing::info!(dir, epoch = saved.max(epoch), "savepoint written");
                Ok(StatementResult::Command("CREATE SAVEPOINT".into()))
            }
            Err(tidemark_state::Error::Unsupported(m)) => Err(PgError::new("0A000", m)),
            Err(e) => Err(PgError::new(
                "58030",
                format!("cannot write savepoint \"{dir}\": {e}"),
            )),
        }
    }
}

/// Copies a savepoint into `state_dir`, which must be empty or absent, so a
/// new server starts from it.
pub(crate) fn restore_from(savepoint: &Path, state_dir: &Path) -> PgResult<()> {
    if !savepoint.join("CURRENT").is_file() {
        return Err(PgError::new(
            "58P01",
            format!(
                "\"{}\" is not a savepoint (it has no CURRENT file)",
                savepoint.display()
            ),
        ));
    }
    let occupied = std::fs::read_dir(state_dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(PgError::new(
            "55000",
            format!(
                "cannot restore into {}: it already holds state",
                state_dir.display()
            ),
        )
        .with_hint("Start from a savepoint with an empty --data-dir."));
    }
    let copy = || -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        for entry in std::fs::read_dir(savepoint)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), state_dir.join(entry.file_name()))?;
            }
        }
        Ok(())
    };
    copy().map_err(|e| {
        PgError::new(
            "58030",
            format!("cannot copy savepoint {}: {e}", savepoint.display()),
        )
    })
}
