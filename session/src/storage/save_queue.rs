//! One save at a time per session, within this process, for the stores that
//! merge by compare-and-swap: Memcached, and aiohttp_session's Redis and
//! Memcached records.
//!
//! Without it, the concurrent requests of one hot session (a page that
//! fires parallel requests) lose the swap to each other again and again: a
//! save that reads the record, merges and writes finds it changed by a
//! sibling, reads again, and after enough losses in a row answers 503. In
//! line, each save merges once, against the record the save before it
//! wrote. Writers in other processes still race by compare-and-swap, as
//! before; the queue only stops a process racing itself.
//!
//! Stores whose save is one atomic command (Redis' scripts, SQL's
//! `UPDATE`, the memory store) never conflict and do not queue: their
//! concurrent saves of one session run side by side.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::StorageError;
use crate::id::SessionId;

/// Independent locks over the map of waiting sessions, so that saves of
/// different sessions seldom meet even on the map.
const SHARDS: usize = 16;

type Lane = Arc<tokio::sync::Mutex<()>>;

/// The sessions with a save under way, each with the lane its saves queue
/// in. A session's entry lives while a save of it runs or waits, no longer.
#[derive(Default)]
pub(crate) struct SaveQueue {
    shards: [Mutex<HashMap<SessionId, Lane>>; SHARDS],
}

impl SaveQueue {
    /// Runs `save` once every save of `id` queued before it in this process
    /// has finished. Waiting longer than `wait` for them is a 503 (the store
    /// is too slow for the requests this session makes), with nothing
    /// written.
    pub(crate) async fn run<T>(
        &self,
        id: &SessionId,
        wait: Duration,
        save: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let shard = &self.shards[shard_of(id)];
        let lane = Arc::clone(
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id.clone())
                .or_default(),
        );
        // Declared before the turn, so dropped after it: also when the
        // request is cancelled while waiting or saving.
        let _leave = Leave {
            shard,
            id,
            lane: &lane,
        };
        let Ok(_turn) = tokio::time::timeout(wait, lane.lock()).await else {
            return Err(StorageError::unavailable(format!(
                "the saves of this session before this one took more than {wait:?}; \
                 too many concurrent writes of one session for the store"
            )));
        };
        save.await
    }

    /// How many sessions have a save running or waiting (for tests).
    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl std::fmt::Debug for SaveQueue {
    // Never the ids: they are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveQueue").finish_non_exhaustive()
    }
}

fn shard_of(id: &SessionId) -> usize {
    // Ids are random: their last character spreads them evenly enough.
    usize::from(id.as_str().as_bytes().last().copied().unwrap_or(0)) % SHARDS
}

/// Removes a session's lane from the map when the last save that held it
/// is done.
struct Leave<'a> {
    shard: &'a Mutex<HashMap<SessionId, Lane>>,
    id: &'a SessionId,
    lane: &'a Lane,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut map = self.shard.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this save's: no one else waits. A new
        // save would have to take the map's lock to join, which we hold.
        if Arc::strong_count(self.lane) == 2 {
            map.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn saves_of_one_session_run_one_at_a_time_and_leave_nothing_behind() {
        let queue = Arc::new(SaveQueue::default());
        let id = SessionId::generate();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (queue, id, running, most) = (
                    Arc::clone(&queue),
                    id.clone(),
                    Arc::clone(&running),
                    Arc::clone(&most),
                );
                tokio::spawn(async move {
                    queue
                        .run(&id, Duration::from_secs(10), async {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(queue.sessions(), 0);
    }

    #[tokio::test]
    async fn saves_of_different_sessions_do_not_wait_for_each_other() {
        let queue = SaveQueue::default();
        let (a, b) = (SessionId::generate(), SessionId::generate());
        let outer = queue.run(&a, Duration::from_secs(1), async {
            queue
                .run(&b, Duration::from_millis(100), async { Ok(7) })
                .await
        });
        assert_eq!(outer.await.unwrap(), 7);
        assert_eq!(queue.sessions(), 0);
    }

    #[tokio::test]
    async fn a_save_that_waits_too_long_is_unavailable_and_a_cancelled_one_leaves() {
        let queue = SaveQueue::default();
        let id = SessionId::generate();
        let error = queue
            .run(&id, Duration::from_secs(1), async {
                queue
                    .run(&id, Duration::from_millis(20), async { Ok(()) })
                    .await
            })
            .await
            .unwrap_err();
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert!(cause.is_some_and(|cause| cause.contains("concurrent writes")));
        let cancelled = tokio::time::timeout(
            Duration::from_millis(10),
            queue.run(
                &id,
                Duration::from_secs(1),
                std::future::pending::<Result<(), _>>(),
            ),
        )
        .await;
        assert!(cancelled.is_err());
        assert_eq!(queue.sessions(), 0);
    }
}
