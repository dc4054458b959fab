//! Group commit of state updates from the scheduler's task threads.
//!
//! Every update is still a durable read-modify-write under the cross-process lock, and
//! every caller still waits until its change is on disk. What changes: updates queued
//! while a write is in progress are applied together in the next one, so eight tasks
//! finishing at once cost one lock, one parse and two fsyncs instead of eight.

use std::sync::mpsc;
use std::thread::JoinHandle;

use super::WorkflowError;
use crate::state::{StateStore, UnifiedState};

type Change = Box<dyn FnOnce(&mut UnifiedState) + Send>;
type Request = (Change, mpsc::SyncSender<Result<(), String>>);

/// A writer thread that applies queued state changes in batches.
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Committer {
    /// Start the writer for `store`.
    pub(crate) fn start(store: StateStore) -> Committer {
        let (tx, rx) = mpsc::channel::<Request>();
        let writer = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                let (changes, acks): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
                let result = store
                    .update(|s| changes.into_iter().for_each(|change| change(s)))
                    .map_err(|e| e.to_string());
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Committer {
            tx: Some(tx),
            writer: Some(writer),
        }
    }

    /// Apply `change` durably; returns once it is on disk (with any others batched in).
    pub(crate) fn update(
        &self,
        change: impl FnOnce(&mut UnifiedState) + Send + 'static,
    ) -> Result<(), WorkflowError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let gone = || WorkflowError::Io(std::io::Error::other("the state writer stopped"));
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send((Box::new(change), ack_tx))
            .map_err(|_| gone())?;
        ack_rx
            .recv()
            .map_err(|_| gone())?
            .map_err(|e| WorkflowError::Io(std::io::Error::other(e)))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    #[test]
    fn concurrent_updates_are_all_applied() {
        let dir = tempfile::tempdir().unwrap();
        crate::fs::create_dir_all(dir.path().join(".claude")).unwrap();
        let project = Project::at(dir.path());
        let committer = Committer::start(StateStore::new(&project));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        committer
                            .update(|st| st.commands.total_executed += 1)
                            .unwrap();
                    }
                });
            }
        });
        drop(committer);
        let state = StateStore::new(&project).load().unwrap();
        assert_eq!(state.commands.total_executed, 200);
    }
}
