//! A save by compare-and-set, written once for both Memcached stores (the
//! native one and aiohttp_session's): Memcached has no merge of its own,
//! so a request's changes are merged into the stored item here and written
//! back only if nothing else wrote it meanwhile.

use std::time::Duration;

use super::client::MemcachedClient;
use crate::error::StorageError;
use crate::record::{Changes, SessionRecord};
use crate::storage::server::timed;

/// Merge attempts in a row before a save gives up with a 503.
const CAS_TRIES: u32 = 16;

/// One item's save: where it is, and what the request knew of it.
pub(crate) struct CasSave<'a> {
    pub(crate) client: &'a MemcachedClient,
    pub(crate) key: &'a str,
    /// Seconds the item lives after this write.
    pub(crate) ttl: u64,
    /// How long one command may take.
    pub(crate) timeout: Duration,
    /// The item's CAS when the request loaded it, if it did.
    pub(crate) version: Option<u64>,
}

impl CasSave<'_> {
    /// Merges `changes` of `record` into the stored item, which `base`
    /// reads as the record to merge into (`None`: the stored item ends
    /// the session, nothing is written); `encode` writes a record as an
    /// item. `Ok(false)` when the item is gone: it is not brought back.
    ///
    /// With the CAS of the load, one round trip when nothing was written
    /// since: the request's record is then the stored one plus its
    /// changes. Otherwise, or when that fails, fetch, merge and write
    /// with the fetched CAS, again after a short random pause while other
    /// writers keep winning.
    pub(crate) async fn merge(
        &self,
        record: &SessionRecord,
        changes: &Changes,
        encode: impl Fn(&SessionRecord) -> Result<Vec<u8>, StorageError>,
        base: impl Fn(&[u8]) -> Option<SessionRecord>,
    ) -> Result<bool, StorageError> {
        if let Some(cas) = self.version {
            if let Some(saved) = self.write(&encode(record)?, cas).await? {
                return Ok(saved);
            }
            tracing::debug!("session changed in Memcached since it was loaded; merging");
            crate::metrics::retried("MemcachedStorage", "conflict");
        }
        for attempt in 0..CAS_TRIES {
            if attempt > 0 {
                let pause = rand::random_range(0..=attempt.min(8) * 2);
                tokio::time::sleep(Duration::from_millis(u64::from(pause))).await;
            }
            let Some((stored, cas)) = timed(self.timeout, self.client.get(self.key)).await? else {
                return Ok(false);
            };
            let Some(mut merged) = base(&stored) else {
                return Ok(false);
            };
            merged.merge(record, changes);
            if let Some(saved) = self.write(&encode(&merged)?, cas).await? {
                return Ok(saved);
            }
            tracing::debug!("concurrent write to a session in Memcached; merging again");
            crate::metrics::retried("MemcachedStorage", "conflict");
        }
        Err(StorageError::unavailable(format!(
            "session record changed under {CAS_TRIES} merge attempts in a row"
        )))
    }

    async fn write(&self, value: &[u8], cas: u64) -> Result<Option<bool>, StorageError> {
        let request = self.client.compare_and_set(self.key, value, self.ttl, cas);
        timed(self.timeout, request).await
    }
}
