//! What the servers count: every command Redis ran and Memcached's command
//! counters, read as differences between two moments, so a test can assert
//! the exact cost of the requests in between.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::servers::ask_all;

/// Commands and how many times each ran, by the server's lower-case name
/// (`hgetall`, `client|setinfo`); commands a Lua script runs count too.
pub type Calls = BTreeMap<String, u64>;

/// Builds the expected [`Calls`] of a test: `calls(&[("hgetall", 20)])`.
pub fn calls(expected: &[(&str, u64)]) -> Calls {
    expected
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect()
}

/// Reads Redis's `INFO commandstats` on each node, over one connection per
/// node opened once: reading then costs exactly one `INFO` per node and
/// nothing else (no connection set-up), which [`RedisCalls::since_last`]
/// takes off again, so what remains is everything anyone else sent.
pub struct RedisCalls {
    nodes: Vec<BufReader<TcpStream>>,
    last: Vec<Calls>,
}

impl RedisCalls {
    /// Starts counting on the nodes at `ports`.
    pub fn new(ports: &[u16]) -> Self {
        let mut nodes: Vec<BufReader<TcpStream>> = ports
            .iter()
            .map(|port| {
                let stream = TcpStream::connect(("127.0.0.1", *port))
                    .unwrap_or_else(|error| panic!("connect to Redis on {port}: {error}"));
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("a read timeout");
                BufReader::new(stream)
            })
            .collect();
        let last = nodes.iter_mut().map(commandstats).collect();
        Self { nodes, last }
    }

    /// The commands the nodes ran since the last call (or since
    /// [`RedisCalls::new`]), summed over the nodes.
    ///
    /// # Panics
    ///
    /// If a node did not count the `INFO` this reader sent it last time:
    /// counters that do not count would make every check pass.
    pub fn since_last(&mut self) -> Calls {
        let mut total = Calls::new();
        for (node, last) in self.nodes.iter_mut().zip(&mut self.last) {
            let now = commandstats(node);
            for (name, count) in &now {
                let before = last.get(name).copied().unwrap_or(0);
                let mut delta = count.checked_sub(before).unwrap_or_else(|| {
                    panic!("{name} counted {before} calls, then {count}: were the stats reset?")
                });
                if name == "info" {
                    // `INFO` counts itself only after it answers: the last
                    // reading's `INFO` is in this one, this one's is not.
                    assert!(
                        delta >= 1,
                        "Redis did not count this reader's own INFO: {now:?}"
                    );
                    delta -= 1;
                }
                if delta > 0 {
                    *total.entry(name.clone()).or_default() += delta;
                }
            }
            *last = now;
        }
        total
    }
}

/// One `INFO commandstats` over `node`: calls per command.
fn commandstats(node: &mut BufReader<TcpStream>) -> Calls {
    node.get_mut()
        .write_all(b"INFO commandstats\r\n")
        .expect("send INFO");
    let mut header = String::new();
    node.read_line(&mut header).expect("read INFO");
    let length: usize = header
        .strip_prefix('$')
        .and_then(|length| length.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO answered {header:?}"));
    let mut body = vec![0; length + 2];
    node.read_exact(&mut body).expect("read INFO");
    let text = String::from_utf8(body).expect("INFO is text");
    assert!(
        text.starts_with("# Commandstats"),
        "not INFO commandstats: {text}"
    );
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let count = rest.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), count))
        })
        .collect()
}

/// Every counter of Memcached's `stats` that counts commands or their
/// outcomes (the others are gauges, times and byte counts).
const MEMCACHED_COMMAND_COUNTERS: [&str; 24] = [
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "cmd_meta",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "auth_cmds",
    "auth_errors",
];

/// Reads Memcached's command counters; `stats` itself counts in none of
/// them.
pub struct MemcachedCalls {
    port: u16,
    last: Calls,
}

impl MemcachedCalls {
    /// Starts counting on the server at `port`.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            last: memcached_counters(port),
        }
    }

    /// How much each command counter moved since the last call (or since
    /// [`MemcachedCalls::new`]); counters that did not move are left out.
    pub fn since_last(&mut self) -> Calls {
        let now = memcached_counters(self.port);
        let delta = now
            .iter()
            .map(|(name, count)| (name.clone(), count - self.last[name]))
            .filter(|(_, delta)| *delta > 0)
            .collect();
        self.last = now;
        delta
    }
}

fn memcached_counters(port: u16) -> Calls {
    let stats = ask_all(port, "stats");
    MEMCACHED_COMMAND_COUNTERS
        .iter()
        .map(|name| {
            let value = stats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("STAT {name} ")))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("no counter {name} in Memcached's stats: {stats}"));
            ((*name).to_owned(), value)
        })
        .collect()
}

/// Counts the statements PostgreSQL ran on one table, from
/// `pg_stat_statements` (loaded by the test server), by their first word
/// (`select`, `insert`, `update`, `delete`): a statement is one round trip
/// of the store. Only statements whose text names the table count, so
/// other tests sharing the server, and the reads of the counters
/// themselves, count in none.
pub struct PostgresCalls {
    url: String,
    table: String,
    last: Calls,
}

impl PostgresCalls {
    /// Starts counting the statements on `table` of the database at `url`.
    pub fn new(url: &str, table: &str) -> Self {
        let mut counter = Self {
            url: url.to_owned(),
            table: table.to_owned(),
            last: Calls::new(),
        };
        counter.last = counter.read();
        counter
    }

    /// How many statements of each kind ran since the last call (or since
    /// [`PostgresCalls::new`]); kinds that did not run are left out.
    pub fn since_last(&mut self) -> Calls {
        let now = self.read();
        let delta = now
            .iter()
            .map(|(kind, count)| {
                let before = self.last.get(kind).copied().unwrap_or(0);
                (kind.clone(), count - before)
            })
            .filter(|(_, delta)| *delta > 0)
            .collect();
        self.last = now;
        delta
    }

    fn read(&self) -> Calls {
        let (url, table) = (self.url.clone(), format!("%\"{}\"%", self.table));
        crate::sql::block_on(async move {
            use sqlx::Connection as _;
            let mut connection = sqlx::PgConnection::connect(&url)
                .await
                .expect("the counter connects to PostgreSQL");
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut connection)
                .await
                .expect("pg_stat_statements is loaded (shared_preload_libraries)");
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT lower(split_part(query, ' ', 1)), sum(calls)::bigint \
                 FROM pg_stat_statements WHERE query LIKE $1 GROUP BY 1",
            )
            .bind(table)
            .fetch_all(&mut connection)
            .await
            .expect("pg_stat_statements answers");
            rows.into_iter()
                .map(|(kind, count)| (kind, count.unsigned_abs()))
                .collect()
        })
    }
}

/// Counts the statements a MySQL or MariaDB server ran, by kind (`select`,
/// `insert`, `update`, `delete`, and `begin`, `commit` and `rollback` of
/// transactions), from its `Com_…` status counters: every
/// client's statements, so the server must be the test's own. (MariaDB's
/// `performance_schema` does not count statements prepared through the
/// binary protocol, as sqlx prepares every statement.) What the counter's
/// own connection runs is measured when it starts and taken off.
pub struct MySqlCalls {
    url: String,
    last: Calls,
    /// What one read of the counters adds to them.
    own: Calls,
}

impl MySqlCalls {
    /// Starts counting the statements of the server at `url`.
    pub fn new(url: &str) -> Self {
        let mut counter = Self {
            url: url.to_owned(),
            last: Calls::new(),
            own: Calls::new(),
        };
        let first = counter.read();
        counter.last = counter.read();
        counter.own = counter
            .last
            .iter()
            .map(|(kind, count)| {
                let before = first.get(kind).copied().unwrap_or(0);
                (kind.clone(), count.saturating_sub(before))
            })
            .collect();
        counter
    }

    /// How many statements of each kind ran since the last call (or since
    /// [`MySqlCalls::new`]); kinds that did not run are left out.
    pub fn since_last(&mut self) -> Calls {
        let now = self.read();
        let delta = now
            .iter()
            .map(|(kind, count)| {
                let before = self.last.get(kind).copied().unwrap_or(0);
                let own = self.own.get(kind).copied().unwrap_or(0);
                (kind.clone(), count.saturating_sub(before + own))
            })
            .filter(|(_, delta)| *delta > 0)
            .collect();
        self.last = now;
        delta
    }

    fn read(&self) -> Calls {
        let url = self.url.clone();
        crate::sql::block_on(async move {
            use sqlx::Connection as _;
            let mut connection = sqlx::MySqlConnection::connect(&url)
                .await
                .expect("the counter connects to MariaDB");
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('Com_select', 'Com_insert', 'Com_update', 'Com_delete', \
                  'Com_begin', 'Com_commit', 'Com_rollback')",
            )
            .fetch_all(&mut connection)
            .await
            .expect("the server shows its status");
            rows.into_iter()
                .map(|(name, count)| {
                    let kind = name.trim_start_matches("Com_").to_lowercase();
                    (kind, count.parse().expect("a count"))
                })
                .collect()
        })
    }
}
