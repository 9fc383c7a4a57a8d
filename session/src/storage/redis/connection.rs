//! The connection to Redis: a standalone server, a Redis Cluster, or the
//! master a set of Sentinels names; the connection itself follows a
//! cluster or a Sentinel failover, so every storage over it (the native
//! one, aiohttp_session's) serves again after one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to Redis: a standalone server, a cluster, or the master of
/// a Sentinel-managed group. All reconnect by themselves after a failure; a
/// cluster this crate connected to
/// ([`RedisStorage::connect`](crate::RedisStorage::connect)) also follows a
/// failover to the replica that took over, and so does a connection
/// through Sentinel (it asks the Sentinels again).
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
            Inner::Sentinel(_) => "sentinel",
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
    Recovering(Arc<Recovery<ClusterClient>>),
    /// A connection to the master the Sentinels name, asked again and made
    /// again after a failure.
    Sentinel(Arc<Recovery<SentinelMaster>>),
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
    /// failed command (see [`Recovery`]); a reconnection waits at
    /// most `timeout`.
    pub(crate) fn recovering(
        client: ClusterClient,
        connection: ClusterConnection,
        timeout: Duration,
    ) -> Self {
        Self(Inner::Recovering(Arc::new(Recovery::new(
            client, connection, timeout,
        ))))
    }

    /// A connection to the master `sentinels` name (found by asking them
    /// once, with `config`), found and made again after a failed command;
    /// a reconnection waits at most `timeout`.
    pub(crate) async fn through_sentinels(
        sentinels: SentinelClient,
        config: AsyncConnectionConfig,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let master = SentinelMaster {
            sentinels: tokio::sync::Mutex::new(sentinels),
            config,
        };
        let connection = master.connect().await?;
        let recovery = Arc::new(Recovery::new(master, connection, timeout));
        tokio::spawn(watch_role(Arc::downgrade(&recovery)));
        Ok(Self(Inner::Sentinel(recovery)))
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
            Inner::Sentinel(recovery) => {
                let _: Value = redis::cmd("PING")
                    .query_async(&mut recovery.connection().await)
                    .await?;
            }
        }
        Ok(())
    }

    /// What the client-side cache of the current connection counted.
    pub(crate) fn cache_statistics(&self) -> Option<redis::caching::CacheStatistics> {
        match &self.0 {
            Inner::Standalone(connection) => connection.get_cache_statistics(),
            Inner::Cluster(connection) => connection.get_cache_statistics(),
            Inner::Recovering(recovery) => recovery.current().get_cache_statistics(),
            Inner::Sentinel(recovery) => recovery.current().get_cache_statistics(),
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
            Inner::Recovering(recovery) => recovery.clone().watched(cmd),
            Inner::Sentinel(recovery) => recovery.clone().watched(cmd),
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
            Inner::Recovering(recovery) => recovery.clone().watched_pipeline(cmd, offset, count),
            Inner::Sentinel(recovery) => recovery.clone().watched_pipeline(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Standalone(connection) => connection.get_db(),
            Inner::Cluster(connection) => connection.get_db(),
            // A cluster has database 0 only.
            Inner::Recovering(_) => 0,
            Inner::Sentinel(recovery) => recovery.current().get_db(),
        }
    }
}

/// What a [`Recovery`] makes its connections from.
pub(crate) trait Reconnect: Send + Sync + 'static {
    type Connection: ConnectionLike + Clone + Send + 'static;

    /// A new connection to where the commands must go now.
    fn connect(&self) -> impl std::future::Future<Output = RedisResult<Self::Connection>> + Send;
}

impl Reconnect for ClusterClient {
    type Connection = ClusterConnection;

    /// A new cluster connection reads the slots afresh.
    async fn connect(&self) -> RedisResult<ClusterConnection> {
        self.get_async_connection().await
    }
}

/// The master a set of Sentinels names.
pub(crate) struct SentinelMaster {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The new connection's timeouts and local cache: a new connection
    /// starts with an empty cache, so nothing read from the old master is
    /// served after a failover.
    config: AsyncConnectionConfig,
}

impl Reconnect for SentinelMaster {
    type Connection = MultiplexedConnection;

    /// Asks the Sentinels, one after another, for the master's address,
    /// and connects to it once it says it is a master (`ROLE`).
    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let client =
            Box::pin(async { self.sentinels.lock().await.async_get_client().await }).await?;
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }
}

/// Asks the server the connection is on for its role every
/// [`RECONNECT_INTERVAL`], and marks the connection failed when it is not
/// the master (or does not answer): a master cut off from the Sentinels
/// that kept its connections, then made a replica, would go on serving
/// reads of what it held, and no read would fail to say so. Ends with the
/// last clone of the connection.
async fn watch_role(recovery: std::sync::Weak<Recovery<SentinelMaster>>) {
    loop {
        tokio::time::sleep(RECONNECT_INTERVAL).await;
        let Some(recovery) = recovery.upgrade() else {
            return;
        };
        let mut connection = recovery.current().clone();
        let role = tokio::time::timeout(
            recovery.timeout,
            redis::cmd("ROLE").query_async::<Vec<Value>>(&mut connection),
        )
        .await;
        let master = matches!(
            role,
            Ok(Ok(ref answer)) if match answer.first() {
                Some(Value::BulkString(role)) => role == b"master",
                Some(Value::SimpleString(role)) => role == "master",
                _ => false,
            }
        );
        if !master {
            recovery.failed.store(true, Ordering::Release);
        }
    }
}

/// A connection that is made again after a failure: a cluster's, or the
/// Sentinels' master's.
///
/// The cluster client of `redis` learns a new topology only from a `MOVED`
/// answer: when a master dies, it reconnects to the dead address again and
/// again and never asks the cluster who took over, so the dead master's
/// slots stay unavailable after the failover, until the app restarts. A
/// new connection reads the slots afresh. Through Sentinel, the address of
/// the master is only known by asking the Sentinels: a connection that
/// reconnected by itself would go back to the dead master, or to the old
/// master once it returns as a replica (its answer to a write is
/// `READONLY`). After a failed or timed-out command, the next command makes
/// a new connection (at most once a second), and the commands after it use
/// it. While there is no master, no connection is made and the commands
/// fail (a 503), until the Sentinels name the new one.
pub(crate) struct Recovery<R: Reconnect> {
    source: R,
    current: Mutex<R::Connection>,
    /// How long a reconnection may take.
    timeout: Duration,
    /// A command failed since the last new connection.
    failed: AtomicBool,
    /// A command is making a new connection.
    reconnecting: AtomicBool,
    /// When the last new connection was tried.
    last_try: Mutex<Option<Instant>>,
}

/// How often a connection is made again at most.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

impl<R: Reconnect> Recovery<R> {
    fn new(source: R, connection: R::Connection, timeout: Duration) -> Self {
        Self {
            source,
            current: Mutex::new(connection),
            timeout,
            failed: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            last_try: Mutex::new(None),
        }
    }

    /// The connection in use, as it is.
    fn current(&self) -> std::sync::MutexGuard<'_, R::Connection> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection to use now, made again first if a command failed
    /// and the last try is a second old.
    ///
    /// The new connection is made in a task of its own, with its own
    /// timeout: a command that gives up meanwhile (its timeout, its client
    /// gone) does not cancel it half-way, so a reconnection slower than one
    /// command's budget still lands for the commands after it.
    async fn connection(self: &Arc<Self>) -> R::Connection {
        let due = self
            .last_try
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|last| last.elapsed() >= RECONNECT_INTERVAL);
        if due
            && self.failed.load(Ordering::Acquire)
            && !self.reconnecting.swap(true, Ordering::AcqRel)
        {
            *self.last_try.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            let recovery = self.clone();
            let reconnect = tokio::spawn(async move {
                let made = tokio::time::timeout(recovery.timeout, recovery.source.connect()).await;
                if let Ok(Ok(connection)) = made {
                    recovery.failed.store(false, Ordering::Release);
                    *recovery.current() = connection;
                }
                recovery.reconnecting.store(false, Ordering::Release);
            });
            let _ = reconnect.await;
        }
        self.current().clone()
    }

    /// `cmd` on the connection to use now, watched.
    fn watched<'a>(self: Arc<Self>, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut connection = self.connection().await;
            let watch = Watch::new(self);
            let result = connection.req_packed_command(cmd).await;
            watch.settle(result.as_ref().err());
            result
        })
    }

    /// `cmd`'s commands on the connection to use now, watched.
    fn watched_pipeline<'a>(
        self: Arc<Self>,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut connection = self.connection().await;
            let watch = Watch::new(self);
            let result = connection.req_packed_commands(cmd, offset, count).await;
            watch.settle(result.as_ref().err());
            result
        })
    }
}

/// Marks the connection failed unless the command it watches succeeds (or
/// fails with an answer of the server's): an error of the connection, a
/// command dropped by a timeout, or a server that is no longer the master
/// or not yet one (`READONLY`, also inside a script's error; `MASTERDOWN`;
/// `LOADING`).
///
/// A command dropped before [`SLOW_COMMAND`] (its request's client went
/// away) says nothing of the connection: counted, clients hanging up on
/// purpose could make the storage reconnect, and empty its local cache,
/// every second.
struct Watch<R: Reconnect> {
    recovery: Option<Arc<Recovery<R>>>,
    started: Instant,
}

/// How long a command must have waited for its drop to mark the
/// connection failed: far above a healthy server's answer.
const SLOW_COMMAND: Duration = Duration::from_millis(100);

impl<R: Reconnect> Watch<R> {
    fn new(recovery: Arc<Recovery<R>>) -> Self {
        Self {
            recovery: Some(recovery),
            started: Instant::now(),
        }
    }

    fn settle(mut self, error: Option<&redis::RedisError>) {
        let failed = error.is_some_and(|error| {
            error.is_io_error()
                || error.is_connection_refusal()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_cluster_error()
                || matches!(
                    error.kind(),
                    redis::ErrorKind::Server(
                        redis::ServerErrorKind::ReadOnly
                            | redis::ServerErrorKind::MasterDown
                            | redis::ServerErrorKind::BusyLoading
                    )
                )
                || error.to_string().contains("READONLY")
        });
        if let (true, Some(recovery)) = (failed, self.recovery.take()) {
            recovery.failed.store(true, Ordering::Release);
        }
        self.recovery = None;
    }
}

impl<R: Reconnect> Drop for Watch<R> {
    fn drop(&mut self) {
        if let Some(recovery) = &self.recovery
            && self.started.elapsed() >= SLOW_COMMAND
        {
            recovery.failed.store(true, Ordering::Release);
        }
    }
}
