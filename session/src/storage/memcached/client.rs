//! A lean, multiplexed Memcached client over the meta protocol, for the
//! few commands the session stores send.
//!
//! Why not the `memcache` crate's own async client: it keeps one request in
//! flight per pooled connection, so every request is its own pair of system
//! calls on both sides and a wakeup of one of memcached's worker threads
//! (`BENCHMARKS.md` has the profile). Here every request to a server goes
//! down one connection, where they queue behind each other: a writer task
//! sends whatever has queued in one write, a reader task hands each reply
//! to the request that is next in line (memcached answers the requests of
//! a connection in order). The protocol pieces still come from the crate:
//! reply headers are parsed by [`MetaResponse::parse_header`], keys are
//! routed to servers by its [`Rendezvous`] hashing (so keys stay on the
//! servers the earlier client put them on).
//!
//! Failure: a request that times out leaves its reply to be read and
//! dropped, so the connection stays in step. A connection whose oldest
//! request has gone unanswered for the I/O timeout (a dead or half-open
//! peer), that reads an unparsable reply or that fails to write, is closed;
//! its waiting requests fail at once, and the next request dials a new one.

use std::fmt;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use memcache::exp::{MetaResponse, Rendezvous, ReturnCode, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// Memcached reads a TTL above 30 days as an absolute Unix time.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 60 * 60;
/// Memcached reads `T` as a signed 32-bit number.
const MAX_WIRE_TTL: u64 = i32::MAX as u64;
/// The longest reply header line read before the stream counts as broken.
const MAX_LINE_BYTES: usize = 8 * 1024;
/// How often a connection looks at how long its oldest request has waited,
/// at most.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// The most bytes of queued requests sent in one write.
const MAX_WRITE_BYTES: usize = 256 * 1024;
/// The longest value a reply may carry: Memcached's default item size
/// (`-I 1m`), above anything this client writes (every store keeps
/// records under [`MAX_RECORD_BYTES`](crate::record::MAX_RECORD_BYTES)). A
/// longer one is a server (or something posing as one) out of step, and
/// reserving room for it would let a `VA 1073741824` header take a
/// gigabyte of memory per connection before a byte of it arrives.
const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// How much room the reply buffer takes at a time as a long value arrives.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What a failed exchange says; it becomes the 503's cause.
pub(crate) type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// One reply: its code, the item's CAS when asked for, its value.
#[derive(Debug)]
struct Reply {
    code: ReturnCode,
    cas: Option<u64>,
    value: Option<Bytes>,
}

type ReplySender = oneshot::Sender<Result<Reply, ClientError>>;

struct Request {
    bytes: Vec<u8>,
    reply: ReplySender,
}

/// Clients of every configured server, and the routing of keys to them.
///
/// Each connection is driven by two tasks spawned on the tokio runtime
/// that first uses it: keep that runtime running while the client is used.
pub(crate) struct MemcachedClient {
    servers: Vec<Server>,
    identities: Vec<String>,
    router: Rendezvous,
    stall_after: StallAfter,
}

/// How long a connection's oldest request may wait for its reply before the
/// connection counts as dead, in milliseconds: shared with every
/// connection, and set to the storage's command timeout.
type StallAfter = Arc<AtomicU64>;

impl MemcachedClient {
    /// A client of these servers (`HOST:PORT`); connections are dialed on
    /// first use, each within `connect_timeout`.
    pub(crate) fn new(servers: &[String], connect_timeout: Duration, io_timeout: Duration) -> Self {
        let stall_after = StallAfter::default();
        let client = Self {
            servers: servers
                .iter()
                .map(|address| Server {
                    address: address.clone(),
                    connect_timeout,
                    stall_after: stall_after.clone(),
                    connection: Mutex::new(None),
                    dialing: tokio::sync::Mutex::new(()),
                })
                .collect(),
            identities: servers.to_vec(),
            router: Rendezvous::new(),
            stall_after,
        };
        client.set_io_timeout(io_timeout);
        client
    }

    /// How long a request may wait for its reply: past it, the connection
    /// it waits on is closed (the storage's command timeout, so a slow
    /// reply the caller still waits for is not cut off early).
    pub(crate) fn set_io_timeout(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.stall_after.store(millis.max(1), Ordering::Relaxed);
    }

    fn server(&self, key: &str) -> &Server {
        &self.servers[self.router.route(key.as_bytes(), &self.identities)]
    }

    /// The item's value and CAS (`mg <key> v c`), `None` on a miss.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<(Bytes, u64)>, ClientError> {
        let request = command("mg", checked_key(key)?, None, format_args!(" v c"));
        let reply = self.server(key).execute(request).await?;
        match reply.code {
            ReturnCode::En => Ok(None),
            ReturnCode::Va => {
                let cas = reply
                    .cas
                    .ok_or("memcached answered a get without the CAS asked for")?;
                Ok(Some((reply.value.unwrap_or_default(), cas)))
            }
            code => Err(unexpected("mg", code)),
        }
    }

    /// Writes the item where there is none (`ms … ME`), expiring after
    /// `ttl_secs`; whether it was written.
    pub(crate) async fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl_secs: u64,
    ) -> Result<bool, ClientError> {
        let ttl = wire_ttl(ttl_secs);
        let request = command(
            "ms",
            checked_key(key)?,
            Some(value),
            format_args!(" T{ttl} ME"),
        );
        let reply = self.server(key).execute(request).await?;
        match reply.code {
            ReturnCode::Hd => Ok(true),
            ReturnCode::Ns => Ok(false),
            code => Err(unexpected("ms", code)),
        }
    }

    /// Writes the item over the one whose CAS is still `cas` (`ms … C`),
    /// expiring after `ttl_secs`: `Some(true)` written, `Some(false)` no
    /// item any more, `None` the item changed since.
    pub(crate) async fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        ttl_secs: u64,
        cas: u64,
    ) -> Result<Option<bool>, ClientError> {
        let ttl = wire_ttl(ttl_secs);
        let request = command(
            "ms",
            checked_key(key)?,
            Some(value),
            format_args!(" T{ttl} C{cas}"),
        );
        let reply = self.server(key).execute(request).await?;
        match reply.code {
            ReturnCode::Hd => Ok(Some(true)),
            ReturnCode::Nf => Ok(Some(false)),
            ReturnCode::Ex => Ok(None),
            code => Err(unexpected("ms", code)),
        }
    }

    /// Deletes the item (`md`); whether there was one.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        let request = command("md", checked_key(key)?, None, format_args!(""));
        let reply = self.server(key).execute(request).await?;
        match reply.code {
            ReturnCode::Hd => Ok(true),
            ReturnCode::Nf => Ok(false),
            code => Err(unexpected("md", code)),
        }
    }

    /// Asks every server for a no-op (`mn`), so an unreachable one shows.
    pub(crate) async fn check(&self) -> Result<(), ClientError> {
        for server in &self.servers {
            let reply = server.execute(b"mn\r\n".to_vec()).await.map_err(|error| {
                ClientError::from(format!("memcached at {}: {error}", server.address))
            })?;
            if reply.code != ReturnCode::Mn {
                return Err(unexpected("mn", reply.code));
            }
        }
        Ok(())
    }
}

/// What makes `key` no Memcached key, if anything: it must be 1 to 250
/// bytes of printable ASCII without spaces, or it would end the command
/// line early or smuggle a second command into it.
fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > 250 {
        return Some("a Memcached key must be 1 to 250 bytes long");
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Some("a Memcached key must be printable ASCII without spaces");
    }
    None
}

/// `key`, if it is a Memcached key; refused before anything is sent.
fn checked_key(key: &str) -> Result<&str, ClientError> {
    match key_problem(key) {
        Some(problem) => Err(problem.into()),
        None => Ok(key),
    }
}

/// A request: `<verb> <key>`, the value's length for a write, `flags`
/// (each with its leading space), then the value.
fn command(verb: &str, key: &str, value: Option<&[u8]>, flags: fmt::Arguments<'_>) -> Vec<u8> {
    debug_assert!(key_problem(key).is_none(), "checked by `checked_key`");
    let value_len = value.map_or(0, <[u8]>::len);
    let mut bytes = Vec::with_capacity(verb.len() + key.len() + value_len + 48);
    // Writes into a Vec cannot fail.
    let _ = write!(bytes, "{verb} {key}");
    if value.is_some() {
        let _ = write!(bytes, " {value_len}");
    }
    let _ = bytes.write_fmt(flags);
    bytes.extend_from_slice(b"\r\n");
    if let Some(value) = value {
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

fn unexpected(command: &str, code: ReturnCode) -> ClientError {
    format!("memcached answered {command} with {code:?}").into()
}

/// Memcached's expiry: relative seconds up to 30 days, an absolute Unix
/// time beyond (never 0, which would mean "never expires"), at most the
/// largest signed 32-bit number, which is all memcached parses.
fn wire_ttl(secs: u64) -> u64 {
    let secs = secs.max(1);
    if secs <= MAX_RELATIVE_TTL {
        return secs;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_secs());
    now.saturating_add(secs).min(MAX_WIRE_TTL)
}

/// One server: its multiplexed connection, dialed on demand.
struct Server {
    address: String,
    connect_timeout: Duration,
    stall_after: StallAfter,
    connection: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// One dial at a time, so a burst after a failure dials once.
    dialing: tokio::sync::Mutex<()>,
}

impl Server {
    async fn execute(&self, bytes: Vec<u8>) -> Result<Reply, ClientError> {
        let connection = self.connection().await?;
        let (reply, answer) = oneshot::channel();
        if let Err(unsent) = connection.send(Request { bytes, reply }) {
            // The connection closed since it was taken; nothing was sent.
            drop(unsent);
            return Err("connection to memcached closed; the next request reconnects".into());
        }
        answer
            .await
            .map_err(|_| ClientError::from("connection to memcached lost before it answered"))?
    }

    /// The live connection, or a new one.
    async fn connection(&self) -> Result<mpsc::UnboundedSender<Request>, ClientError> {
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let _dialing = self.dialing.lock().await;
        if let Some(live) = self.live() {
            return Ok(live);
        }
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to memcached at {} timed out", self.address),
                )
            })??;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr().ok();
        let sender = spawn_connection(stream, self.stall_after.clone(), peer);
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        Ok(sender)
    }

    fn live(&self) -> Option<mpsc::UnboundedSender<Request>> {
        let slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|sender| !sender.is_closed()).cloned()
    }
}

/// Starts the writer and reader tasks of a connection; requests go in
/// through the returned sender, which reports closed once either ends.
fn spawn_connection(
    stream: TcpStream,
    stall_after: StallAfter,
    peer: Option<SocketAddr>,
) -> mpsc::UnboundedSender<Request> {
    let (reader, writer) = stream.into_split();
    let (requests, queued) = mpsc::unbounded_channel();
    let (waiting, in_line) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_requests(writer, queued, waiting));
    tokio::spawn(async move {
        let mut in_line = in_line;
        let mut oldest = None;
        if let Err(error) = read_replies(reader, &mut in_line, &mut oldest, stall_after).await {
            tracing::warn!(?peer, %error, "memcached connection closed");
            // The requests waiting on it learn why.
            let why = format!("the connection to memcached failed: {error}");
            let waiting = oldest
                .into_iter()
                .chain(std::iter::from_fn(|| in_line.try_recv().ok()));
            for (sender, _) in waiting {
                let _ = sender.send(Err(why.clone().into()));
            }
        }
        // Its queued requests fail with it; the next request redials.
        writer.abort();
    });
    requests
}

/// Sends queued requests, as many as have queued in one write, after
/// putting their reply senders in line for the reader.
async fn write_requests(
    mut socket: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Request>,
    waiting: mpsc::UnboundedSender<(ReplySender, Instant)>,
) {
    let mut batch = Vec::new();
    while let Some(first) = queued.recv().await {
        let mut next = Some(first);
        while let Some(request) = next {
            if request.reply.is_closed() {
                // Its caller gave up before it was sent: skip it.
                next = queued.try_recv().ok();
                continue;
            }
            batch.extend_from_slice(&request.bytes);
            if waiting.send((request.reply, Instant::now())).is_err() {
                return;
            }
            next = if batch.len() < MAX_WRITE_BYTES {
                queued.try_recv().ok()
            } else {
                None
            };
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(error) = socket.write_all(&batch).await {
            tracing::warn!(%error, "writing to memcached failed");
            return;
        }
        batch.clear();
        if batch.capacity() > MAX_WRITE_BYTES {
            batch = Vec::new();
        }
    }
}

/// Reads replies and answers the requests in line, in order, until the
/// connection ends, breaks, or its oldest request waits past `stall_after`.
async fn read_replies(
    mut socket: OwnedReadHalf,
    in_line: &mut mpsc::UnboundedReceiver<(ReplySender, Instant)>,
    oldest: &mut Option<(ReplySender, Instant)>,
    stall_after: StallAfter,
) -> Result<(), ClientError> {
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let stalled = || Duration::from_millis(stall_after.load(Ordering::Relaxed));
    let mut watch =
        tokio::time::interval((stalled() / 4).clamp(Duration::from_millis(1), WATCH_EVERY));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `oldest`: the request whose reply comes next, once the watch has
    // looked at it.
    loop {
        let wanted = loop {
            match parse(&mut buffer)? {
                Parsed::Incomplete { wanted } => break wanted,
                Parsed::Reply(reply) => {
                    let Some((sender, _)) = oldest.take().or_else(|| in_line.try_recv().ok())
                    else {
                        return Err("memcached sent a reply nobody asked for".into());
                    };
                    // A caller that timed out has gone; its reply is dropped.
                    let _ = sender.send(reply);
                }
            }
        };
        // Room for what is still to come, a chunk at a time: memory
        // follows the bytes that arrive, not what a header announces.
        buffer.reserve(
            wanted
                .saturating_sub(buffer.len())
                .clamp(8 * 1024, READ_CHUNK_BYTES),
        );
        tokio::select! {
            read = socket.read_buf(&mut buffer) => {
                if read? == 0 {
                    if oldest.is_some() || !in_line.is_empty() {
                        return Err("memcached closed the connection with requests unanswered".into());
                    }
                    return Ok(());
                }
            }
            _ = watch.tick() => {
                if oldest.is_none() {
                    *oldest = in_line.try_recv().ok();
                }
                if let Some((_, sent)) = oldest
                    && sent.elapsed() > stalled()
                {
                    return Err(format!("memcached did not answer within {:?}", stalled()).into());
                }
                if oldest.is_none() && in_line.is_closed() {
                    return Ok(());
                }
            }
        }
    }
}

enum Parsed {
    /// A whole reply, or the error a whole error line says.
    Reply(Result<Reply, ClientError>),
    /// More bytes are needed; `wanted` is how many the reply has in all,
    /// when known.
    Incomplete { wanted: usize },
}

/// Takes one reply off the front of `buffer`; an error means the stream
/// can no longer be read in step.
fn parse(buffer: &mut BytesMut) -> Result<Parsed, ClientError> {
    let Some(end) = buffer.iter().position(|&byte| byte == b'\n') else {
        if buffer.len() > MAX_LINE_BYTES {
            return Err("memcached sent a reply line too long to be one".into());
        }
        return Ok(Parsed::Incomplete { wanted: 0 });
    };
    let line = buffer[..end].strip_suffix(b"\r").unwrap_or(&buffer[..end]);
    let header = match MetaResponse::parse_header(line) {
        Ok(header) => header,
        // A bare `ERROR` (an unknown command) is never an answer to these:
        // a server that does not speak the meta protocol reads a value as
        // a command of its own, and its replies no longer match ours.
        Err(memcache::exp::Error::Rejected(message)) if message == "ERROR" => {
            return Err("memcached does not know a meta command (it needs 1.6 or later)".into());
        }
        // An error line (`CLIENT_ERROR`, `SERVER_ERROR`) answers its request.
        Err(error @ (memcache::exp::Error::Rejected(_) | memcache::exp::Error::Server(_))) => {
            buffer.advance(end + 1);
            return Ok(Parsed::Reply(Err(error.into())));
        }
        Err(error) => return Err(error.into()),
    };
    let cas = header
        .flags()
        .find_map(|flag| flag.strip_prefix(b"c"))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok());
    let code = header.rc();
    if code != ReturnCode::Va {
        buffer.advance(end + 1);
        return Ok(Parsed::Reply(Ok(Reply {
            code,
            cas,
            value: None,
        })));
    }
    // `VA <length> <flags>`: the header parsed, so the length is a number.
    let length: usize = line
        .split(|&byte| byte == b' ')
        .nth(1)
        .and_then(|token| std::str::from_utf8(token).ok()?.parse().ok())
        .ok_or("memcached sent a value without its length")?;
    if length > MAX_VALUE_BYTES {
        return Err(format!(
            "memcached announced a value of {length} bytes, more than any item this client \
             writes ({MAX_VALUE_BYTES})"
        )
        .into());
    }
    let whole = end + 1 + length + 2;
    if buffer.len() < whole {
        return Ok(Parsed::Incomplete { wanted: whole });
    }
    if &buffer[whole - 2..whole] != b"\r\n" {
        return Err("memcached sent a value without its line end".into());
    }
    buffer.advance(end + 1);
    let value = buffer.split_to(length).freeze();
    buffer.advance(2);
    Ok(Parsed::Reply(Ok(Reply {
        code,
        cas,
        value: Some(value),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<Result<Reply, String>> {
        let mut buffer = BytesMut::from(bytes);
        let mut replies = Vec::new();
        while let Parsed::Reply(reply) = parse(&mut buffer).unwrap() {
            replies.push(reply.map_err(|error| error.to_string()));
        }
        replies
    }

    #[test]
    fn replies_are_taken_in_order_with_their_values_and_cas() {
        let replies = parse_all(
            b"VA 3 c42\r\nabc\r\nEN\r\nHD\r\nCLIENT_ERROR bad data chunk\r\nVA 0 c7\r\n\r\nMN\r\n",
        );
        assert_eq!(replies.len(), 6);
        let first = replies[0].as_ref().unwrap();
        assert_eq!((first.code, first.cas), (ReturnCode::Va, Some(42)));
        assert_eq!(first.value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(replies[1].as_ref().unwrap().code, ReturnCode::En);
        assert_eq!(replies[2].as_ref().unwrap().code, ReturnCode::Hd);
        assert!(replies[3].as_ref().unwrap_err().contains("bad data chunk"));
        assert_eq!(
            replies[4].as_ref().unwrap().value.as_deref(),
            Some(&b""[..])
        );
        assert_eq!(replies[5].as_ref().unwrap().code, ReturnCode::Mn);
    }

    #[test]
    fn a_value_split_across_reads_waits_for_all_of_it() {
        let mut buffer = BytesMut::from(&b"VA 5 c1\r\nab"[..]);
        assert!(matches!(
            parse(&mut buffer).unwrap(),
            Parsed::Incomplete { wanted: 16 }
        ));
        buffer.extend_from_slice(b"cde\r");
        assert!(matches!(
            parse(&mut buffer).unwrap(),
            Parsed::Incomplete { .. }
        ));
        buffer.extend_from_slice(b"\nHD\r\n");
        let Parsed::Reply(Ok(reply)) = parse(&mut buffer).unwrap() else {
            panic!("a whole reply")
        };
        assert_eq!(reply.value.as_deref(), Some(&b"abcde"[..]));
        assert_eq!(&buffer[..], b"HD\r\n");
    }

    #[test]
    fn a_stream_out_of_step_is_an_error() {
        for bytes in [
            &b"VA 3 c1\r\nabcd\r\n"[..],
            b"XX 1\r\n",
            b"VA x\r\n",
            b"ERROR\r\n",
            &[b'a'; MAX_LINE_BYTES + 1],
        ] {
            assert!(parse(&mut BytesMut::from(bytes)).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn a_value_longer_than_any_item_written_is_refused_from_its_header() {
        let mut buffer = BytesMut::from(&b"VA 1073741824 c1\r\n"[..]);
        let error = parse(&mut buffer).err().expect("refused");
        assert!(error.to_string().contains("1073741824"), "{error}");
        let mut buffer = BytesMut::from(&b"VA 1048576 c1\r\n"[..]);
        assert!(matches!(
            parse(&mut buffer).unwrap(),
            Parsed::Incomplete { .. }
        ));
    }

    /// A server that answers every request with `reply`, and the bytes it
    /// was sent.
    async fn fake_server(reply: &'static [u8]) -> (String, Arc<Mutex<Vec<u8>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut bytes = [0u8; 4096];
                    while let Ok(read) = socket.read(&mut bytes).await {
                        if read == 0 {
                            return;
                        }
                        seen.lock().unwrap().extend_from_slice(&bytes[..read]);
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (address, received)
    }

    #[tokio::test]
    async fn a_server_announcing_a_gigabyte_gets_an_error_not_the_memory() {
        let (address, _) = fake_server(b"VA 1073741824 c1\r\n").await;
        let second = Duration::from_secs(1);
        let client = MemcachedClient::new(&[address], second, second);
        let error = client.get("session:a").await.expect_err("refused");
        assert!(error.to_string().contains("more than any item"), "{error}");
    }

    #[tokio::test]
    async fn keys_that_are_not_memcached_keys_never_reach_the_server() {
        let (address, received) = fake_server(b"EN\r\n").await;
        let second = Duration::from_secs(1);
        let client = MemcachedClient::new(&[address], second, second);
        let long = "k".repeat(251);
        for key in ["", "two words", "line\r\nmd other", long.as_str(), "é"] {
            assert!(client.get(key).await.is_err(), "{key:?}");
            assert!(client.delete(key).await.is_err(), "{key:?}");
            assert!(client.add(key, b"v", 60).await.is_err(), "{key:?}");
        }
        assert!(client.get("session:fine").await.unwrap().is_none());
        assert_eq!(&received.lock().unwrap()[..], b"mg session:fine v c\r\n");
    }

    #[test]
    fn requests_are_written_as_the_meta_protocol_reads_them() {
        assert_eq!(
            command("mg", "k", None, format_args!(" v c")),
            b"mg k v c\r\n"
        );
        assert_eq!(command("md", "k", None, format_args!("")), b"md k\r\n");
        assert_eq!(
            command("ms", "k", Some(b"ab"), format_args!(" T5 C7")),
            b"ms k 2 T5 C7\r\nab\r\n"
        );
    }

    #[test]
    fn long_ttls_become_absolute_times() {
        assert_eq!(wire_ttl(0), 1);
        assert_eq!(wire_ttl(MAX_RELATIVE_TTL), MAX_RELATIVE_TTL);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let absolute = wire_ttl(MAX_RELATIVE_TTL + 1);
        assert!((now + MAX_RELATIVE_TTL..now + MAX_RELATIVE_TTL + 10).contains(&absolute));
        assert_eq!(wire_ttl(u64::MAX), MAX_WIRE_TTL);
    }
}
