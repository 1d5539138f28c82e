//! Group commit, for every backend: concurrent `append_decisions` calls
//! that arrive while a commit is in progress are written together by the
//! next one, in one transaction, so concurrent `Route` calls share one
//! fsync (SQLite) or one commit round trip and WAL flush (PostgreSQL)
//! instead of queueing for one each. Every caller returns only after the
//! transaction holding its rows committed (or failed).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{LoggedDecision, StoreError};

/// Where a group commit leaves one caller's result.
type Slot = Arc<Mutex<Option<Result<(), StoreError>>>>;

/// Writes one batch of decisions in one transaction: one result per row
/// in order (a duplicate id fails its own row only; a failed commit fails
/// them all).
pub(crate) trait BatchWriter {
    fn write_decisions(&self, batch: &[LoggedDecision]) -> Vec<Result<(), StoreError>>;
}

/// The queue of decisions waiting for the next commit, and the lock its
/// leader holds while committing.
#[derive(Default)]
pub(crate) struct GroupCommit {
    waiting: Mutex<Vec<(LoggedDecision, Slot)>>,
    leader: Mutex<()>,
}

/// A mutex whose holder panicked is still usable here (the data is a Vec
/// of pending rows or a result slot), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCommit {
    /// Checks `ds` ([`crate::check::decision`]), queues the valid ones and
    /// returns once they are committed: either by this call (it leads:
    /// everything waiting goes in one transaction) or by the call that
    /// held the leader lock before it (which fills every slot of its batch
    /// before letting go).
    pub fn append(
        &self,
        ds: &[LoggedDecision],
        writer: &dyn BatchWriter,
    ) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = Vec::with_capacity(ds.len());
        let mut slots = Vec::new();
        {
            let mut waiting = lock(&self.waiting);
            for d in ds {
                match crate::check::decision(d) {
                    Err(e) => results.push(Some(Err(e))),
                    Ok(()) => {
                        let slot: Slot = Arc::new(Mutex::new(None));
                        waiting.push((d.clone(), slot.clone()));
                        slots.push((results.len(), slot));
                        results.push(None);
                    }
                }
            }
        }
        if !slots.is_empty() {
            let _leader = lock(&self.leader);
            // All our rows were queued together, so they are in one batch:
            // the first slot tells whether it was committed already.
            if lock(&slots[0].1).is_none() {
                let (rows, batch_slots): (Vec<LoggedDecision>, Vec<Slot>) =
                    std::mem::take(&mut *lock(&self.waiting))
                        .into_iter()
                        .unzip();
                let done = writer.write_decisions(&rows);
                debug_assert_eq!(done.len(), rows.len());
                for (s, r) in batch_slots.iter().zip(done) {
                    *lock(s) = Some(r);
                }
            }
        }
        for (i, slot) in slots {
            results[i] = lock(&slot).take();
        }
        results
            .into_iter()
            .map(|r| r.expect("our rows went in together, in one batch"))
            .collect()
    }
}
