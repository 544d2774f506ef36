//! The catalog as the store keeps it: each relation's creating statement, by
//! id, in the catalog table, written in the same commit that starts (or stops)
//! the relation. At start the statements run again, in id order, so every
//! relation comes back under its old id.

use tidemark_plan::RelationId;
use tidemark_state::{table_key, table_prefix, WriteBatch, CATALOG_TABLE_ID};

use crate::database::{Database, Request};
use crate::error::{PgError, PgResult};

fn record_key(id: RelationId) -> Vec<u8> {
    table_key(CATALOG_TABLE_ID, &id.to_be_bytes())
}

/// What the store records for a relation `req` creates: nothing new for one
/// being restored (a view's job decides whether it resumes from its
/// checkpoint or starts over, see `Runtime::create_view`).
pub(crate) fn created(req: &Request<'_>, id: RelationId) -> WriteBatch {
    let mut batch = WriteBatch::default();
    if req.restoring.is_none() {
        batch.put(record_key(id), req.text.as_bytes().to_vec());
    }
    batch
}

/// Removes a dropped relation's record.
pub(crate) fn dropped(id: RelationId) -> WriteBatch {
    let mut batch = WriteBatch::default();
    batch.delete(record_key(id));
    batch
}

impl Database {
    /// Recreates every stored relation, in the order they were created.
    pub(crate) async fn restore_catalog(&self) -> PgResult<()> {
        let prefix = table_prefix(CATALOG_TABLE_ID);
        let (epoch, mut entries) = self
            .store
            .scan_prefixes(std::slice::from_ref(&prefix))
            .map_err(|e| PgError::new("XX001", format!("cannot read the stored catalog: {e}")))?;
        let records = entries.pop().unwrap_or_default();
        if records.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let count = records.len();
        tracing::info!(epoch, relations = count, "restoring the catalog");
        // Each view resumes with a barrier; sources read once all have.
        let held = HeldSources::new(&self.runtime);
        for (key, value) in records {
            let id = key
                .get(prefix.len()..)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(RelationId::from_be_bytes);
            let (Some(id), Ok(text)) = (id, String::from_utf8(value)) else {
                return Err(PgError::new(
                    "XX001",
                    "the stored catalog holds a record that does not decode",
                ));
            };
            self.restore_relation(id, &text).await.map_err(|e| {
                PgError::new(
                    "XX001",
                    format!(
                        "cannot restore relation {id} from the stored catalog: {}",
                        e.message
                    ),
                )
                .with_detail(format!("Stored statement: {text}"))
            })?;
        }
        drop(held);
        // A recomputed view is read only once it has caught up with its
        // inputs; resumed ones are as of their checkpoint already.
        if self.runtime.recomputed_any() {
            let caught_up = self.runtime.flush().await.map_err(|e| {
                PgError::new("XX000", format!("restored views did not catch up: {e}"))
            })?;
            tracing::info!(
                relations = count,
                epoch = caught_up,
                seconds = started.elapsed().as_secs_f64(),
                "restored; recomputed views have caught up"
            );
        } else {
            tracing::info!(
                relations = count,
                seconds = started.elapsed().as_secs_f64(),
                "restored from the last checkpoint"
            );
        }
        Ok(())
    }

    async fn restore_relation(&self, id: RelationId, text: &str) -> PgResult<()> {
        let mut statements = tidemark_sql::parse(text).map_err(|e| {
            PgError::new("XX001", format!("the stored statement does not parse: {e}"))
        })?;
        let (Some(statement), None) = (statements.pop(), statements.pop()) else {
            return Err(PgError::new("XX001", "expected one stored statement"));
        };
        let req = Request {
            sql: text,
            text,
            params: None,
            restoring: Some(id),
        };
        self.run(&req, statement).await?;
        Ok(())
    }
}

/// Source readers held back until dropped (also when a restore fails).
struct HeldSources<'r>(&'r tidemark_engine::Runtime);

impl<'r> HeldSources<'r> {
    fn new(runtime: &'r tidemark_engine::Runtime) -> Self {
        runtime.hold_sources(true);
        Self(runtime)
    }
}

impl Drop for HeldSources<'_> {
    fn drop(&mut self) {
        self.0.hold_sources(false);
    }
}
