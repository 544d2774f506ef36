//! What a running job reports about itself, for `SHOW JOBS`.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Counters shared by a job's actors; cheap to update from the hot path.
#[derive(Debug)]
pub struct JobMetrics {
    rows_in: AtomicU64,
    late_rows: AtomicU64,
    malformed_rows: AtomicU64,
    /// The latest watermark at the job's input, µs; `i64::MIN` before the first.
    watermark: AtomicI64,
    /// Readers that have not yet caught up with their input.
    unfinished_readers: AtomicUsize,
    /// The epoch of the first barrier after the last bounded reader finished.
    finished_epoch: AtomicU64,
    /// `GROUP BY` groups in memory, and their estimated bytes, over all
    /// instances, as of each one's last checkpoint.
    cached_groups: AtomicI64,
    cached_bytes: AtomicI64,
    /// Groups read back from the store after they left memory.
    groups_read_back: AtomicU64,
}

impl Default for JobMetrics {
    fn default() -> Self {
        Self {
            rows_in: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            malformed_rows: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            unfinished_readers: AtomicUsize::new(0),
            finished_epoch: AtomicU64::new(0),
            cached_groups: AtomicI64::new(0),
            cached_bytes: AtomicI64::new(0),
            groups_read_back: AtomicU64::new(0),
        }
    }
}

/// A copy of a job's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStats {
    pub rows_in: u64,
    pub late_rows: u64,
    pub malformed_rows: u64,
    /// Microseconds since the Unix epoch; `None` before the first watermark,
    /// `Some(i64::MAX)` once every bounded input has ended.
    pub watermark: Option<i64>,
    pub cached_groups: i64,
    pub cached_bytes: i64,
    pub groups_read_back: u64,
}

impl JobMetrics {
    pub fn add_rows_in(&self, n: usize) {
        self.rows_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_late_rows(&self, n: usize) {
        self.late_rows.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn set_malformed_rows(&self, previous: u64, now: u64) {
        self.malformed_rows
            .fetch_add(now.saturating_sub(previous), Ordering::Relaxed);
    }

    /// Changes the groups one instance holds in memory by these amounts.
    pub fn add_cached(&self, groups: i64, bytes: i64) {
        self.cached_groups.fetch_add(groups, Ordering::Relaxed);
        self.cached_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_groups_read_back(&self, n: usize) {
        self.groups_read_back.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn set_watermark(&self, micros: i64) {
        self.watermark.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn reader_started(&self) {
        self.unfinished_readers.fetch_add(1, Ordering::SeqCst);
    }

    /// A reader passed the barrier of `epoch` after catching up.
    pub fn reader_finished(&self, epoch: u64) {
        self.finished_epoch.fetch_max(epoch, Ordering::SeqCst);
        self.unfinished_readers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether every reader has caught up and the rows it read by then are
    /// in a checkpoint committed at or before `committed`.
    pub fn inputs_done_by(&self, committed: u64) -> bool {
        self.unfinished_readers.load(Ordering::SeqCst) == 0
            && self.finished_epoch.load(Ordering::SeqCst) <= committed
    }

    pub fn stats(&self) -> JobStats {
        let wm = self.watermark.load(Ordering::Relaxed);
        JobStats {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            late_rows: self.late_rows.load(Ordering::Relaxed),
            malformed_rows: self.malformed_rows.load(Ordering::Relaxed),
            watermark: (wm != i64::MIN).then_some(wm),
            cached_groups: self.cached_groups.load(Ordering::Relaxed),
            cached_bytes: self.cached_bytes.load(Ordering::Relaxed),
            groups_read_back: self.groups_read_back.load(Ordering::Relaxed),
        }
    }
}
