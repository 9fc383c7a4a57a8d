//! The request's session: a dict-like map of JSON values with metadata and a
//! life cycle.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::SaveError;
use crate::id::SessionId;
use crate::kind::{Main, SessionKind};
use crate::lifetime::{Lifetimes, MaxAge};
use crate::record::{Changes, SessionRecord};
use crate::transport::Via;

/// The session of the current request.
///
/// Extract it in a handler (it implements axum's `FromRequestParts`); the
/// [`SessionLayer`](crate::SessionLayer) must be installed. The session is
/// loaded from storage once per request, by the first extractor that asks for
/// it; after that every method is a plain synchronous call. Clones share one
/// session, so changes made through any clone (or through a typed view) are
/// seen by all of them and saved once, after the handler.
///
/// ```
/// use typed_sessions::Session;
///
/// async fn visit(session: Session) -> String {
///     let count: u64 = session.get("count").unwrap_or(0);
///     session.insert("count", count + 1).expect("a u64 serializes");
///     format!("visit number {}", count + 1)
/// }
/// ```
pub struct Session<K: SessionKind = Main> {
    state: Arc<Mutex<State>>,
    kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> Clone for Session<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            kind: PhantomData,
        }
    }
}

/// What the layer knows of the request when it makes its session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts {
    /// The request's time, in seconds since the Unix epoch.
    pub(crate) now: u64,
    /// The lifetimes the layer is configured with.
    pub(crate) lifetimes: Lifetimes,
    /// The layer's session kind, `None` for the main one.
    pub(crate) kind: Option<&'static str>,
    /// How the request's session id came, if it carried one: an empty
    /// session must remove that cookie, or announce the ended token.
    pub(crate) came_via: Option<Via>,
}

/// A session the storage found for the request's cookie.
pub(crate) struct Found {
    pub(crate) record: SessionRecord,
    /// Its server-side id; `None` for cookie storages.
    pub(crate) identity: Option<SessionId>,
    /// The store's version of the record when it was loaded.
    pub(crate) version: Option<u64>,
    /// The store extended the session on this read: its cookie goes out
    /// again with the new expiry, even if nothing changed.
    pub(crate) extended: bool,
    /// The store asked for the session to move to a fresh id now.
    pub(crate) renew: bool,
}

/// The session's data and everything the layer needs to save it after the
/// handler.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) record: SessionRecord,
    /// The stored record this session lives in, if any.
    pub(crate) identity: Option<SessionId>,
    /// The store's version of that record when it was loaded.
    pub(crate) version: Option<u64>,
    pub(crate) is_new: bool,
    pub(crate) changes: Changes,
    /// The max age changed, or a lifecycle call asked for a save.
    pub(crate) must_save: bool,
    /// A stored record to delete when saving (after `invalidate`, `renew`
    /// or `start_new`).
    pub(crate) discard: Option<SessionId>,
    /// The store extended the session on this read: its cookie goes out
    /// again with the new expiry, even if nothing changed.
    pub(crate) resend_cookie: bool,
    /// The smallest max age a typed struct that wrote in this request asked
    /// for.
    pub(crate) typed_max_age: Option<u64>,
    /// `renew` moved a stored record's data to a new identity: the save
    /// must find the old record still there, or carry nothing.
    pub(crate) carries_stored_data: bool,
    /// The session was read after more than half of its idle time: the
    /// save writes it again (its times), even if nothing changed.
    pub(crate) refresh: bool,
    /// The first write the handler asked for that could not be made (a
    /// typed field or flash message that is not JSON, a user id no store
    /// can hold): the save refuses with it, so the response says the write
    /// did not land.
    pub(crate) refused: Option<SaveError>,
    pub(crate) facts: RequestFacts,
}

impl State {
    /// A new empty session at the request's time.
    fn new(facts: RequestFacts) -> Self {
        Self {
            record: SessionRecord::of_kind(facts.now, facts.kind),
            identity: None,
            version: None,
            is_new: true,
            changes: Changes::default(),
            must_save: false,
            discard: None,
            resend_cookie: false,
            typed_max_age: None,
            carries_stored_data: false,
            refresh: false,
            refused: None,
            facts,
        }
    }

    /// The session a storage found.
    fn found(found: Found, facts: RequestFacts) -> Self {
        let renew = found.renew;
        let mut state = Self {
            resend_cookie: found.extended
                && facts
                    .lifetimes
                    .cookie_max_age(found.record.max_age)
                    .is_some(),
            refresh: facts.lifetimes.needs_refresh(
                found.record.max_age,
                found.record.updated,
                facts.now,
            ),
            record: found.record,
            identity: found.identity,
            version: found.version,
            is_new: false,
            ..Self::new(facts)
        };
        if renew {
            // What `Session::renew` does: the save creates the record under
            // a fresh id and deletes the old one, or carries nothing if the
            // old one was ended meanwhile.
            state.carries_stored_data = state.identity.is_some();
            state.discard_identity();
            state.changes.rewrite_all();
            state.must_save = true;
        }
        state
    }

    pub(crate) fn is_changed(&self) -> bool {
        self.must_save
            || self.discard.is_some()
            || !self.changes.is_empty()
            || self.refused.is_some()
    }

    /// Whether the layer has anything to do after the handler: write the
    /// session, or send its cookie again.
    pub(crate) fn needs_commit(&self) -> bool {
        self.is_changed() || self.refresh || (self.resend_cookie && self.identity.is_some())
    }

    /// The cookie's `Max-Age` when written now: the session's own, or the
    /// layer's, cut short by the end the session chose.
    pub(crate) fn cookie_max_age(&self) -> Option<u64> {
        self.facts
            .lifetimes
            .cookie_max_age_at(self.record.times(), self.facts.now)
    }

    fn reset_to_new(&mut self) {
        self.discard_identity();
        self.record = SessionRecord::of_kind(self.facts.now, self.facts.kind);
        self.typed_max_age = None;
        self.carries_stored_data = false;
        self.is_new = true;
        self.changes.rewrite_all();
        self.must_save = true;
    }

    fn discard_identity(&mut self) {
        if let Some(old) = self.identity.take() {
            // After a second lifecycle call in one request the first
            // discarded id is still the only stored record.
            self.discard.get_or_insert(old);
        }
    }
}

impl Session {
    fn from_state(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            kind: PhantomData,
        }
    }

    /// A new empty session for a request with no (usable) cookie.
    pub(crate) fn new_empty(facts: RequestFacts) -> Self {
        Self::from_state(State::new(facts))
    }

    /// The session a storage found for the request's cookie.
    pub(crate) fn found(found: Found, facts: RequestFacts) -> Self {
        Self::from_state(State::found(found, facts))
    }

    /// The same session, as the handle of kind `K` (the layer of kind `K`
    /// made it).
    pub(crate) fn into_kind<K: SessionKind>(self) -> Session<K> {
        Session {
            state: self.state,
            kind: PhantomData,
        }
    }
}

impl<K: SessionKind> Session<K> {
    /// Moves the state out for saving, without copying the map: the request
    /// is over, and nothing reads the session after this.
    pub(crate) fn take_for_save(&self) -> State {
        let mut state = self.lock();
        let empty = State::new(state.facts);
        std::mem::replace(&mut *state, empty)
    }

    /// A poisoned lock only means a handler panicked while holding it; the
    /// map itself is still consistent (every method leaves it whole).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value at `key`, deserialized into `T`.
    ///
    /// `None` when the key is missing or its value is not a `T` (for example
    /// data written by an older deploy); the latter is logged as a warning
    /// that names the key and the type, never the value (a token, a
    /// secret). Use [`Session::try_get`] to tell the two apart.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        match self.try_get(key) {
            Ok(value) => value,
            Err(_) => {
                wrong_type::<T>(key);
                None
            }
        }
    }

    /// The value at `key`, deserialized into `T`: `Ok(None)` when missing, an
    /// error when the stored value is not a `T`.
    pub fn try_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        let state = self.lock();
        match state.record.data.get(key) {
            Some(value) => T::deserialize(value).map(Some),
            None => Ok(None),
        }
    }

    /// The raw JSON value at `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().record.data.get(key).cloned()
    }

    /// Serializes `value` and stores it at `key`, marking `key` changed.
    ///
    /// Fails only if `value` cannot be represented as JSON (a map with
    /// non-string keys, say); the session is then left as it was.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(value)?;
        self.insert_value(key, value);
        Ok(())
    }

    /// Stores a raw JSON value at `key`, marking `key` changed; returns the
    /// previous value.
    pub fn insert_value(&self, key: &str, value: Value) -> Option<Value> {
        let mut state = self.lock();
        state.changes.record_set(key);
        state.record.data.insert(key.to_owned(), value)
    }

    /// Removes `key`, marking it removed if it was there; returns its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut state = self.lock();
        let old = state.record.data.remove(key);
        if old.is_some() {
            state.changes.record_removed(key);
        }
        old
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.lock().record.data.contains_key(key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().record.data.keys().cloned().collect()
    }

    /// A copy of the whole map, for iterating or serializing it.
    pub fn to_map(&self) -> Map<String, Value> {
        self.lock().record.data.clone()
    }

    /// How many keys have a value.
    pub fn len(&self) -> usize {
        self.lock().record.data.len()
    }

    /// Whether the map is empty. An empty session is not stored (saving it
    /// removes the cookie and any server-side record), unless it is bound
    /// to a user ([`bind_user`](Session::bind_user)): the binding is data.
    pub fn is_empty(&self) -> bool {
        self.lock().record.data.is_empty()
    }

    /// Removes every key, marking each removed, and the binding to a user
    /// (see [`bind_user`](Session::bind_user)): a cleared session holds
    /// nothing, so it is not stored (its record is deleted, its cookie
    /// removed), as before a user was bound. Unlike
    /// [`Session::invalidate`], the session keeps its identity until then.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.record.user = None;
        let keys: Vec<String> = state.record.data.keys().cloned().collect();
        for key in &keys {
            state.changes.record_removed(key);
        }
        state.record.data.clear();
    }

    /// Whether this request started the session: there was no valid cookie,
    /// or the session was invalidated or replaced with [`Session::start_new`].
    pub fn is_new(&self) -> bool {
        self.lock().is_new
    }

    /// The server-side id of the session: `None` for cookie storages, for a
    /// session not saved yet, and after `renew`, `invalidate` or `start_new`
    /// until the next request.
    pub fn identity(&self) -> Option<SessionId> {
        self.lock().identity.clone()
    }

    /// When the session was created, in seconds since the Unix epoch. Writes
    /// never move it.
    pub fn created(&self) -> u64 {
        self.lock().record.created
    }

    /// The session's max age: its cookie's `Max-Age`, and how long it may
    /// go without a write. The session's own, if it chose one, else the
    /// layer's; `None` means a browser-session cookie (which the server
    /// still ends after the layer's idle timeout).
    pub fn max_age(&self) -> Option<Duration> {
        self.lock().cookie_max_age().map(Duration::from_secs)
    }

    /// Chooses this session's own max age (whole seconds), persisted with
    /// it and kept whatever the layer's configuration becomes: `Some` for a
    /// persistent cookie (a "remember me") that ends this long after the
    /// last write, `None` for a browser-session cookie. The layer's absolute
    /// timeout still applies, but never ends the session before its max age.
    pub fn set_max_age(&self, max_age: Option<Duration>) {
        let mut state = self.lock();
        state.record.max_age =
            max_age.map_or(MaxAge::BrowserSession, |age| MaxAge::Seconds(age.as_secs()));
        state.must_save = true;
    }

    /// "Remember me": `true` gives the session a persistent cookie of the
    /// layer's `max_age` (two weeks, [`DEFAULT_REMEMBER_MAX_AGE`](crate::SessionLayerBuilder::DEFAULT_REMEMBER_MAX_AGE),
    /// on a layer of browser-session cookies), kept across deploys like any
    /// max age the session chose; `false` a browser-session cookie, bound on
    /// the server by the layer's idle timeout. Call it at login, after
    /// [`renew`](Session::renew).
    pub fn remember(&self, remember: bool) {
        let mut state = self.lock();
        state.record.max_age = if remember {
            MaxAge::Seconds(state.facts.lifetimes.remember_max_age())
        } else {
            MaxAge::BrowserSession
        };
        state.must_save = true;
    }

    /// Ends the session at `at` (seconds since the Unix epoch), whatever
    /// its max age and the layer's timeouts say (they can still end it
    /// sooner); the cookie's `Expires` is brought forward to match. `None`
    /// removes the end. Persisted with the session.
    pub fn expire_at(&self, at: Option<u64>) {
        let mut state = self.lock();
        state.record.expires_at = at;
        state.must_save = true;
    }

    /// The end chosen with [`expire_at`](Session::expire_at), if any.
    pub fn expires_at(&self) -> Option<u64> {
        self.lock().record.expires_at
    }

    /// A write of a `T` at `key` failed because the value is not JSON (a
    /// map with non-string keys, a `Serialize` impl that errs): the key is
    /// left as it was, and the save after the handler refuses with
    /// [`SaveError::Unserializable`](crate::SaveError::Unserializable), so
    /// nothing is written and the response is an error, never a 200 that
    /// lost the write. The first such write is the one reported.
    pub(crate) fn refuse_write<T: ?Sized>(&self, key: &str, error: serde_json::Error) {
        self.refuse_save(SaveError::Unserializable {
            key: key.to_owned(),
            type_name: std::any::type_name::<T>(),
            source: error,
        });
    }

    /// Makes the save after the handler refuse with `error` (the first
    /// refusal of the request is the one reported): nothing is written.
    pub(crate) fn refuse_save(&self, error: SaveError) {
        self.lock().refused.get_or_insert(error);
    }

    /// A typed struct with `#[session(max_age = …)]` wrote: the session's
    /// max age becomes the smallest such value written in this request.
    pub(crate) fn apply_typed_max_age(&self, max_age: u64) {
        let mut state = self.lock();
        let smallest = state
            .typed_max_age
            .map_or(max_age, |other| other.min(max_age));
        state.typed_max_age = Some(smallest);
        if state.record.max_age != MaxAge::Seconds(smallest) {
            state.record.max_age = MaxAge::Seconds(smallest);
            state.must_save = true;
        }
    }

    /// Whether the session will be written after the handler.
    pub fn is_changed(&self) -> bool {
        self.lock().is_changed()
    }

    /// Asks for the whole session to be written, for callers that changed it
    /// in a way the map could not see.
    pub fn mark_changed(&self) {
        let mut state = self.lock();
        state.changes.rewrite_all();
        state.must_save = true;
    }

    /// Ends the session: the data is cleared, the server-side record is
    /// deleted and the cookie removed when the response is sent. The
    /// session is new from here on: keys set after this (a flash message
    /// after logout) start a brand-new session, with a new identity, a new
    /// creation time and the default max age.
    pub fn invalidate(&self) {
        self.lock().reset_to_new();
    }

    /// Keeps the data under a new identity and deletes the old server-side
    /// record, so an id an attacker planted or learned before is worthless.
    /// Call it on login and on every change of privilege. Cookie storages
    /// re-seal the data into a new cookie.
    ///
    /// Renewal fails closed: if the old record is gone by the time the
    /// session is saved (a logout or a revocation that landed while this
    /// request ran), its data is not carried to a new id; nothing is saved
    /// and no cookie is sent.
    pub fn renew(&self) {
        let mut state = self.lock();
        state.carries_stored_data |= state.identity.is_some();
        state.discard_identity();
        state.changes.rewrite_all();
        state.must_save = true;
    }

    /// Replaces the session with a brand-new empty one (new creation time,
    /// the default max age), discarding the old one and its server-side
    /// record: aiohttp_session's `new_session`, for login handlers. It does
    /// what [`Session::invalidate`] does; the name says why you call it.
    pub fn start_new(&self) {
        self.lock().reset_to_new();
    }
}

/// Warns that the value at `key` is not a `T`: the key and the type only,
/// since serde's message quotes the value.
pub(crate) fn wrong_type<T>(key: &str) {
    crate::throttle::throttled_warn!(
        key,
        expected = std::any::type_name::<T>(),
        "session value does not have the requested type; treated as missing"
    );
}

/// Serializes the session's data map (not its metadata), without copying
/// it: `Json(json!({ "data": &session }))` answers with the map.
impl<K: SessionKind> Serialize for Session<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.lock().record.data.serialize(serializer)
    }
}

impl<K: SessionKind> fmt::Debug for Session<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("kind", &K::NAME)
            .field("new", &state.is_new)
            .field("identity", &state.identity)
            .field("created", &state.record.created)
            .field("max_age", &state.record.max_age)
            .field("keys", &state.record.data.keys().collect::<Vec<_>>())
            .field("changed", &state.is_changed())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn session_with(identity: Option<SessionId>, data: Value) -> Session {
        let mut record = SessionRecord::new(100, MaxAge::Seconds(60));
        record.data = data.as_object().cloned().unwrap_or_default();
        let found = Found {
            record,
            identity,
            version: None,
            extended: false,
            renew: false,
        };
        let facts = RequestFacts {
            now: 200,
            lifetimes: Lifetimes {
                max_age: Some(30),
                ..Lifetimes::default()
            },
            kind: None,
            came_via: Some(Via::Cookie),
        };
        Session::found(found, facts)
    }

    #[test]
    fn reads_change_nothing() {
        let session = session_with(None, serde_json::json!({"a": 1, "b": "x"}));
        assert_eq!(session.get::<u64>("a"), Some(1));
        assert_eq!(session.get::<u64>("b"), None, "wrong type reads as missing");
        assert!(session.try_get::<u64>("b").is_err());
        assert_eq!(session.keys(), ["a", "b"]);
        assert!(!session.is_changed());
    }

    #[test]
    fn writes_are_tracked_per_key() {
        let session = session_with(None, serde_json::json!({"a": 1, "b": 2}));
        session.insert("c", 3).unwrap();
        assert_eq!(session.remove("a"), Some(Value::from(1)));
        assert_eq!(session.remove("missing"), None);
        let state = session.lock();
        assert_eq!(state.changes.set_keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(state.changes.removed_keys().collect::<Vec<_>>(), ["a"]);
        assert!(!state.changes.is_full_rewrite());
    }

    #[test]
    fn removing_a_missing_key_is_no_change() {
        let session = session_with(None, serde_json::json!({}));
        session.remove("nothing");
        assert!(!session.is_changed());
    }

    #[test]
    fn renew_keeps_data_and_discards_identity() {
        let id = SessionId::generate();
        let session = session_with(Some(id.clone()), serde_json::json!({"user": "ann"}));
        session.renew();
        assert_eq!(session.identity(), None);
        assert_eq!(session.get::<String>("user").as_deref(), Some("ann"));
        assert_eq!(session.lock().discard, Some(id));
    }

    #[test]
    fn only_a_renewal_of_stored_data_must_find_the_old_record() {
        let renewed = session_with(Some(SessionId::generate()), serde_json::json!({"a": 1}));
        renewed.renew();
        assert!(renewed.lock().carries_stored_data);
        // A login that starts over keeps nothing of the old record, so a
        // record ended meanwhile does not stop it.
        let login = session_with(Some(SessionId::generate()), serde_json::json!({"a": 1}));
        login.renew();
        login.start_new();
        login.insert("user", "ann").unwrap();
        assert!(!login.lock().carries_stored_data);
        let fresh = session_with(None, serde_json::json!({}));
        fresh.renew();
        assert!(!fresh.lock().carries_stored_data, "nothing stored to carry");
    }

    #[test]
    fn invalidate_then_renew_still_deletes_the_first_record() {
        let id = SessionId::generate();
        let session = session_with(Some(id.clone()), serde_json::json!({"a": 1}));
        session.invalidate();
        session.renew();
        assert!(session.is_empty());
        assert_eq!(session.lock().discard, Some(id));
    }

    #[test]
    fn invalidate_starts_over_like_start_new() {
        let session = session_with(Some(SessionId::generate()), serde_json::json!({"a": 1}));
        session.set_max_age(Some(Duration::from_secs(5)));
        session.invalidate();
        assert!(session.is_new() && session.is_empty());
        assert_eq!(session.created(), 200);
        assert_eq!(session.max_age(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn start_new_resets_creation_and_max_age() {
        let session = session_with(Some(SessionId::generate()), serde_json::json!({"a": 1}));
        session.start_new();
        assert!(session.is_new());
        assert!(session.is_empty());
        assert_eq!(session.created(), 200);
        assert_eq!(session.max_age(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn serializes_as_its_data() {
        let session = session_with(None, serde_json::json!({"a": 1, "b": [true]}));
        assert_eq!(
            serde_json::to_value(&session).unwrap(),
            serde_json::json!({"a": 1, "b": [true]})
        );
    }

    /// Everything logged while `f` runs on this thread.
    pub(crate) fn logs_during(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// What `f` logs, calling it until it logs something (at most three
    /// seconds): warnings a client can cause go out once a second per call
    /// site, which other tests share. `f` says whether it did its part.
    pub(crate) fn logs_of(mut f: impl FnMut() -> bool) -> String {
        let mut logs = String::new();
        for _ in 0..30 {
            logs = logs_during(|| assert!(f()));
            if !logs.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        logs
    }

    #[test]
    fn a_value_of_the_wrong_type_is_logged_by_key_and_type_never_by_value() {
        let session = session_with(None, serde_json::json!({"token": "s3cret-value"}));
        let logs = logs_of(|| session.get::<u64>("token").is_none());
        assert!(logs.contains("token") && logs.contains("u64"), "{logs}");
        assert!(!logs.contains("s3cret"), "{logs}");
    }

    #[test]
    fn debug_shows_keys_but_not_values_or_ids() {
        let id = SessionId::generate();
        let session = session_with(Some(id.clone()), serde_json::json!({"token": "s3cret"}));
        let debug = format!("{session:?}");
        assert!(debug.contains("token"));
        assert!(!debug.contains("s3cret"));
        assert!(!debug.contains(id.as_str()));
    }
}
