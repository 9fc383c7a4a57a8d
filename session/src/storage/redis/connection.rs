//! The connection to Redis: a standalone server, or a Redis Cluster that
//! the connection itself follows through a failover, so every storage over
//! it (the native one, aiohttp_session's) serves again after one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to Redis: a standalone server or a cluster. Both reconnect
/// by themselves after a failure; a cluster this crate connected to
/// ([`RedisStorage::connect`](crate::RedisStorage::connect)) also follows a
/// failover to the replica that took over.
///
/// Made from a [`ConnectionManager`] or a [`ClusterConnection`] the app
/// has (build them through [`typed_sessions::redis`](crate::redis), so the
/// versions match), or taken from a storage with
/// [`RedisStorage::connection`](crate::RedisStorage::connection) to share.
#[derive(Clone)]
pub struct RedisConnection(Inner);

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Standalone(_) => "standalone",
            Inner::Cluster(_) | Inner::Recovering(_) => "cluster",
        })
    }
}

#[derive(Clone)]
enum Inner {
    Standalone(ConnectionManager),
    /// A cluster connection the app made: followed as the `redis` crate
    /// follows it.
    Cluster(ClusterConnection),
    /// A cluster connection this crate made from its client, made again
    /// after a failure.
    Recovering(Arc<ClusterRecovery>),
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        Self(Inner::Standalone(connection))
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        Self(Inner::Cluster(connection))
    }
}

impl RedisConnection {
    /// A cluster connection made from `client`, made again from it after a
    /// failed command (see [`ClusterRecovery`]); a reconnection waits at
    /// most `timeout`.
    pub(crate) fn recovering(
        client: ClusterClient,
        connection: ClusterConnection,
        timeout: Duration,
    ) -> Self {
        Self(Inner::Recovering(Arc::new(ClusterRecovery {
            client,
            current: Mutex::new(connection),
            timeout,
            failed: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            last_try: Mutex::new(None),
        })))
    }

    /// One `PING` to the server, or to every master of a cluster (each has
    /// its own connection, with its own invalidations).
    pub(crate) async fn ping_every_node(&mut self) -> redis::RedisResult<()> {
        match &mut self.0 {
            Inner::Standalone(connection) => {
                let _: Value = redis::cmd("PING").query_async(connection).await?;
            }
            Inner::Cluster(connection) => ping_masters(connection).await?,
            // Not watched: a heartbeat slower than the cache's lag says the
            // cache may not be used, not that the connection failed; the
            // commands that fail mark it.
            Inner::Recovering(recovery) => ping_masters(&mut recovery.connection().await).await?,
        }
        Ok(())
    }

    /// What the client-side cache of the current connection counted.
    pub(crate) fn cache_statistics(&self) -> Option<redis::caching::CacheStatistics> {
        match &self.0 {
            Inner::Standalone(connection) => connection.get_cache_statistics(),
            Inner::Cluster(connection) => connection.get_cache_statistics(),
            Inner::Recovering(recovery) => recovery
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_cache_statistics(),
        }
    }
}

async fn ping_masters(connection: &mut ClusterConnection) -> redis::RedisResult<()> {
    connection
        .route_command(
            redis::cmd("PING"),
            RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::AllSucceeded),
            )),
        )
        .await?;
    Ok(())
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Standalone(connection) => connection.req_packed_command(cmd),
            Inner::Cluster(connection) => connection.req_packed_command(cmd),
            Inner::Recovering(recovery) => {
                let recovery = recovery.clone();
                Box::pin(async move {
                    let mut connection = recovery.connection().await;
                    let watch = Watch(Some(recovery));
                    let result = connection.req_packed_command(cmd).await;
                    watch.settle(result.as_ref().err());
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Standalone(connection) => connection.req_packed_commands(cmd, offset, count),
            Inner::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
            Inner::Recovering(recovery) => {
                let recovery = recovery.clone();
                Box::pin(async move {
                    let mut connection = recovery.connection().await;
                    let watch = Watch(Some(recovery));
                    let result = connection.req_packed_commands(cmd, offset, count).await;
                    watch.settle(result.as_ref().err());
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Standalone(connection) => connection.get_db(),
            Inner::Cluster(connection) => connection.get_db(),
            // A cluster has database 0 only.
            Inner::Recovering(_) => 0,
        }
    }
}

/// A cluster connection that is made again from its client after a
/// failure.
///
/// The cluster client of `redis` learns a new topology only from a `MOVED`
/// answer: when a master dies, it reconnects to the dead address again and
/// again and never asks the cluster who took over, so the dead master's
/// slots stay unavailable after the failover, until the app restarts. A
/// new connection reads the slots afresh; after a failed or timed-out
/// command, the next command makes one (at most once a second), and the
/// commands after it use it.
struct ClusterRecovery {
    client: ClusterClient,
    current: Mutex<ClusterConnection>,
    /// How long a reconnection may take.
    timeout: Duration,
    /// A command failed since the last new connection.
    failed: AtomicBool,
    /// A command is making a new connection.
    reconnecting: AtomicBool,
    /// When the last new connection was tried.
    last_try: Mutex<Option<Instant>>,
}

/// How often a cluster connection is made again at most.
const CLUSTER_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

impl ClusterRecovery {
    /// The connection to use now, made again first if a command failed
    /// and the last try is a second old.
    ///
    /// The new connection is made in a task of its own, with its own
    /// timeout: a command that gives up meanwhile (its timeout, its client
    /// gone) does not cancel it half-way, so a reconnection slower than one
    /// command's budget still lands for the commands after it.
    async fn connection(self: &Arc<Self>) -> ClusterConnection {
        let due = self
            .last_try
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|last| last.elapsed() >= CLUSTER_RECONNECT_INTERVAL);
        if due
            && self.failed.load(Ordering::Acquire)
            && !self.reconnecting.swap(true, Ordering::AcqRel)
        {
            *self.last_try.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            let recovery = self.clone();
            let reconnect = tokio::spawn(async move {
                let made =
                    tokio::time::timeout(recovery.timeout, recovery.client.get_async_connection())
                        .await;
                if let Ok(Ok(connection)) = made {
                    recovery.failed.store(false, Ordering::Release);
                    *recovery
                        .current
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = connection;
                }
                recovery.reconnecting.store(false, Ordering::Release);
            });
            let _ = reconnect.await;
        }
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Marks the cluster connection failed unless the command it watches
/// succeeds (or fails with an answer of the server's): an error of the
/// connection, or a command dropped by a timeout.
struct Watch(Option<Arc<ClusterRecovery>>);

impl Watch {
    fn settle(mut self, error: Option<&redis::RedisError>) {
        let healthy = error.is_none_or(|error| {
            !(error.is_io_error()
                || error.is_connection_refusal()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_cluster_error())
        });
        if healthy {
            self.0 = None;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(recovery) = &self.0 {
            recovery.failed.store(true, Ordering::Release);
        }
    }
}
