//! Typed views of the session map: what `#[derive(Session)]` builds on.
//!
//! A struct that derives [`Session`](derive@crate::Session) describes some
//! keys of the session map: each named field is one key. Handlers extract
//! [`TypedSession<T>`] and get a getter, a setter and a mutable accessor per
//! field, over the same map the dynamic [`Session`] sees.
//!
//! This module holds what the derive implements ([`SessionData`]) and what
//! its accessors return ([`FieldMut`]); [`TypedSession`] and
//! [`MissingField`] are at the crate's root.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::extract::SessionRejection;
use crate::kind::SessionKind;
use crate::session::Session;

/// A struct whose fields are keys of the session map. Implemented by
/// [`#[derive(Session)]`](derive@crate::Session); not meant to be
/// implemented by hand.
pub trait SessionData: Sized + 'static {
    /// The struct's `#[session(max_age = …)]` in seconds: when a typed
    /// accessor of this struct writes, the session's max age becomes this.
    const MAX_AGE: Option<u64>;
    /// The session keys of the fields, in declaration order.
    const KEYS: &'static [&'static str];
    /// The kind of session the struct reads: `#[session(kind = …)]`,
    /// [`Main`](crate::Main) by default. A `TypedSession<Self>` is
    /// extracted from that kind's layer only.
    type Kind: SessionKind;
    /// The generated accessors, reached through `TypedSession<Self>`.
    type View;

    /// The accessors over `fields`. Called by [`TypedSession`].
    #[doc(hidden)]
    fn view(fields: Fields<Self>) -> Self::View;

    /// The typed handle the accessors hold.
    #[doc(hidden)]
    fn fields(view: &Self::View) -> &Fields<Self>;

    /// Reads every field: a missing key gives the field's default, and a
    /// field without one is an error. Called by [`TypedSession::get`].
    #[doc(hidden)]
    fn read(fields: &Fields<Self>) -> Result<Self, MissingField>;

    /// Writes every field whose value differs from the stored one. Called
    /// by [`TypedSession::set`].
    #[doc(hidden)]
    fn write(&self, fields: &Fields<Self>);
}

/// Marks the types a session field can have: any
/// `Serialize + DeserializeOwned` type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a session field: it is not `Serialize + DeserializeOwned`",
    label = "this field's type must implement `serde::Serialize` and `serde::Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
#[doc(hidden)]
pub trait SessionField: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> SessionField for T {}

/// One field of a [`SessionData`] struct: its key and its type.
/// `#[derive(Session)]` makes one type per field implementing this, so a
/// field type that cannot be stored is reported once, at the field.
#[doc(hidden)]
pub trait FieldKey: 'static {
    /// The struct the field belongs to.
    type Data: SessionData;
    /// The field's type.
    type Value: SessionField;
    /// The field's session key.
    const KEY: &'static str;
}

/// A field without a default whose key has no value in the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the session has no value for key `{key}` (field of `{data}` without a default)")]
pub struct MissingField {
    /// The session key.
    pub key: &'static str,
    /// The typed struct.
    pub data: &'static str,
}

/// The typed handle over the session map that generated accessors call: it
/// reads and writes single keys as `T`'s fields and applies `T`'s max age.
#[doc(hidden)]
pub struct Fields<T: SessionData> {
    session: Session<T::Kind>,
    data: PhantomData<fn() -> T>,
}

impl<T: SessionData> Fields<T> {
    /// A typed handle over `session`.
    pub fn new(session: Session<T::Kind>) -> Self {
        Self {
            session,
            data: PhantomData,
        }
    }

    /// The underlying session.
    pub fn session(&self) -> &Session<T::Kind> {
        &self.session
    }

    /// The field's value, or `default()` when its key is missing or holds a
    /// value that is no longer of the field's type (data from an older
    /// deploy; logged as a warning).
    pub fn get_or_else<K: FieldKey<Data = T>>(
        &self,
        default: impl FnOnce() -> K::Value,
    ) -> K::Value {
        self.get::<K>().unwrap_or_else(default)
    }

    /// The field's value, or [`MissingField`] when its key is missing or
    /// holds a value that is no longer of the field's type.
    pub fn require<K: FieldKey<Data = T>>(&self) -> Result<K::Value, MissingField> {
        self.get::<K>().ok_or(MissingField {
            key: K::KEY,
            data: std::any::type_name::<T>(),
        })
    }

    fn get<K: FieldKey<Data = T>>(&self) -> Option<K::Value> {
        match self.session.try_get(K::KEY) {
            Ok(value) => value,
            Err(_) => {
                // The key and the type only: serde's message quotes the value.
                crate::session::wrong_type::<K::Value>(K::KEY);
                None
            }
        }
    }

    /// Stores the field, marking only its key changed. A value that
    /// serializes to `null` (an `Option` field set to `None`) removes the
    /// key, which reads back as the field's default. A value that is not
    /// JSON leaves the key as it was and makes the save refuse (see
    /// [`SaveError::Unserializable`](crate::SaveError::Unserializable)).
    pub fn set<K: FieldKey<Data = T>>(&self, value: &K::Value) {
        if let Some(json) = self.json_or_refuse::<K::Value>(K::KEY, serde_json::to_value(value)) {
            self.store(K::KEY, json);
        }
    }

    /// Stores the field only if it differs from the stored value; returns
    /// whether it did.
    pub fn set_if_changed<K: FieldKey<Data = T>>(&self, value: &K::Value) -> bool {
        let Some(json) = self.json_or_refuse::<K::Value>(K::KEY, serde_json::to_value(value))
        else {
            return false;
        };
        let unchanged = match self.session.get_value(K::KEY) {
            None => json.is_null(),
            Some(stored) => stored == json,
        };
        if !unchanged {
            self.store(K::KEY, json);
        }
        !unchanged
    }

    /// A guard that dereferences to `value` and, when dropped, stores it as
    /// the field if it changed.
    pub fn field_mut<K: FieldKey<Data = T>>(&self, value: K::Value) -> FieldMut<'_, T, K::Value> {
        let original = serde_json::to_value(&value).ok();
        FieldMut {
            fields: self,
            key: K::KEY,
            value,
            original,
            to_json: |value| serde_json::to_value(value),
        }
    }

    /// A field's value as JSON, or `None` when it could not be serialized:
    /// the key is then left unchanged and the save will refuse, so the
    /// request cannot answer as if the write had landed.
    fn json_or_refuse<V>(
        &self,
        key: &'static str,
        serialized: serde_json::Result<Value>,
    ) -> Option<Value> {
        match serialized {
            Ok(json) => Some(json),
            Err(error) => {
                self.session.refuse_write::<V>(key, error);
                None
            }
        }
    }

    fn store(&self, key: &str, json: Value) {
        if json.is_null() {
            self.session.remove(key);
        } else {
            self.session.insert_value(key, json);
        }
        if let Some(max_age) = T::MAX_AGE {
            self.session.apply_typed_max_age(max_age);
        }
    }
}

impl<T: SessionData> Clone for Fields<T> {
    fn clone(&self) -> Self {
        Self {
            session: self.session.clone(),
            data: PhantomData,
        }
    }
}

impl<T: SessionData> fmt::Debug for Fields<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fields")
            .field("data", &std::any::type_name::<T>())
            .field("session", &self.session)
            .finish()
    }
}

/// A field's value, borrowed for changing in place; stored back into the
/// session (marking only its key changed) when dropped, if it changed: a
/// guard only read from writes nothing. `T` is the struct, `V` the field's
/// type: `count_mut()` of `Visit`'s `count: u64` returns
/// `FieldMut<'_, Visit, u64>`.
///
/// ```
/// # use typed_sessions::{Session, TypedSession};
/// # #[derive(Session)]
/// # struct Visit { #[session(default)] count: u64 }
/// async fn handler(visit: TypedSession<Visit>) {
///     *visit.count_mut() += 1;
/// }
/// ```
// Typed by the field's value, not by its generated key type: the key type
// is private to the struct's module, and an accessor as visible as its
// field could not return a type naming it.
pub struct FieldMut<'a, T: SessionData, V> {
    fields: &'a Fields<T>,
    key: &'static str,
    value: V,
    /// The value as it was handed out, to tell a change from a read.
    original: Option<Value>,
    /// `V`'s serializer, taken where `V: Serialize` is known. A bound on
    /// `V` here would be checked again in every `_mut` accessor's
    /// signature, adding a second error at `#[derive(Session)]` to the one
    /// at the field's type when the type is not `Serialize`.
    to_json: fn(&V) -> serde_json::Result<Value>,
}

impl<T: SessionData, V> Deref for FieldMut<'_, T, V> {
    type Target = V;

    fn deref(&self) -> &V {
        &self.value
    }
}

impl<T: SessionData, V> DerefMut for FieldMut<'_, T, V> {
    fn deref_mut(&mut self) -> &mut V {
        &mut self.value
    }
}

impl<T: SessionData, V> Drop for FieldMut<'_, T, V> {
    fn drop(&mut self) {
        let serialized = (self.to_json)(&self.value);
        if self.original.is_some() && serialized.as_ref().ok() == self.original.as_ref() {
            return;
        }
        if let Some(json) = self.fields.json_or_refuse::<V>(self.key, serialized) {
            self.fields.store(self.key, json);
        }
    }
}

impl<T: SessionData, V: fmt::Debug> fmt::Debug for FieldMut<'_, T, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldMut")
            .field("key", &self.key)
            .field("value", &self.value)
            .finish()
    }
}

/// The session seen through the struct `T`: an axum extractor.
///
/// It dereferences to `T`'s generated accessors (`field()`,
/// `set_field(value)`, `field_mut()`, each as visible as its field), and
/// offers the whole struct ([`TypedSession::get`], [`TypedSession::set`])
/// and the session's life cycle. Several typed sessions and the dynamic [`Session`] may be used in
/// one request: they share one map, loaded once, and see each other's
/// changes.
///
/// ```
/// use typed_sessions::{Session, TypedSession};
///
/// #[derive(Session)]
/// #[session(max_age = "30m")]
/// struct Visit {
///     last_visit: Option<f64>,
///     #[session(rename = "n", default)]
///     count: u64,
/// }
///
/// async fn handler(visit: TypedSession<Visit>) -> String {
///     let last = visit.last_visit();          // Option<f64>
///     visit.set_last_visit(Some(1_764_000_000.0)); // marks only "last_visit" changed
///     *visit.count_mut() += 1;                // marks only "n" changed
///     format!("Last visited: {last:?}")
/// }
/// ```
pub struct TypedSession<T: SessionData> {
    view: T::View,
}

impl<T: SessionData> TypedSession<T> {
    /// `session` seen through `T`: a session of `T`'s kind only, so that
    /// one kind's data is never read as another's.
    pub fn from_session(session: Session<T::Kind>) -> Self {
        Self {
            view: T::view(Fields::new(session)),
        }
    }

    /// The dynamic session underneath, the same map.
    pub fn session(&self) -> &Session<T::Kind> {
        T::fields(&self.view).session()
    }

    /// Every field of `T` read at once.
    pub fn get(&self) -> Result<T, MissingField> {
        T::read(T::fields(&self.view))
    }

    /// Writes every field of `value`, marking changed only the keys whose
    /// values differ from the stored ones.
    pub fn set(&self, value: &T) {
        value.write(T::fields(&self.view));
    }

    /// See [`Session::invalidate`].
    pub fn invalidate(&self) {
        self.session().invalidate();
    }

    /// See [`Session::renew`].
    pub fn renew(&self) {
        self.session().renew();
    }

    /// See [`Session::start_new`].
    pub fn start_new(&self) {
        self.session().start_new();
    }

    /// See [`Session::bind_user`]: binds the session to `user` at login,
    /// renewing its id. The bound user is read with
    /// `typed.session().user()` (`user` is too common a field name to be a
    /// method here: it would hide the field's getter).
    pub fn bind_user(&self, user: impl Into<String>) {
        self.session().bind_user(user);
    }
}

impl<T: SessionData> Deref for TypedSession<T> {
    type Target = T::View;

    fn deref(&self) -> &T::View {
        &self.view
    }
}

impl<T: SessionData> fmt::Debug for TypedSession<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(T::fields(&self.view), f)
    }
}

impl<S: Send + Sync, T: SessionData> FromRequestParts<S> for TypedSession<T> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Session::<T::Kind>::from_request_parts(parts, state)
            .await
            .map(Self::from_session)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::session::tests::{logs_of, session_with};

    fn guest() -> String {
        "guest".to_owned()
    }

    #[derive(crate::Session)]
    #[session(max_age = 900)]
    struct Account {
        user_id: u64,
        #[session(rename = "name", default = "guest")]
        display_name: String,
        nickname: Option<String>,
        #[session(default)]
        logins: u32,
    }

    fn marked(session: &Session) -> (Vec<String>, Vec<String>) {
        let state = session.lock();
        (
            state.changes.set_keys().map(str::to_owned).collect(),
            state.changes.removed_keys().map(str::to_owned).collect(),
        )
    }

    #[test]
    fn a_stored_value_of_another_type_is_logged_by_key_and_type_never_by_value() {
        // serde's message would quote it: `invalid type: string "s3cret-value"`.
        let session = session_with(None, json!({"user_id": "s3cret-value"}));
        let account = TypedSession::<Account>::from_session(session);
        let logs = logs_of(|| account.user_id().is_err());
        assert!(logs.contains("user_id") && logs.contains("u64"), "{logs}");
        assert!(!logs.contains("s3cret"), "{logs}");
    }

    #[test]
    fn getters_read_defaults_and_mark_nothing() {
        let session = session_with(None, json!({"logins": 3}));
        let account = TypedSession::<Account>::from_session(session.clone());
        assert_eq!(account.display_name(), "guest");
        assert_eq!(account.nickname(), None);
        assert_eq!(account.logins(), 3);
        assert_eq!(
            account.user_id(),
            Err(MissingField {
                key: "user_id",
                data: std::any::type_name::<Account>()
            })
        );
        assert!(account.get().is_err(), "a required field is missing");
        assert!(!session.is_changed());
    }

    #[test]
    fn setters_and_mutable_accessors_mark_only_their_key() {
        let session = session_with(None, json!({"user_id": 7, "logins": 1, "other": true}));
        let account = TypedSession::<Account>::from_session(session.clone());
        *account.logins_mut() += 1;
        assert_eq!(marked(&session), (vec!["logins".to_owned()], vec![]));
        account.set_display_name("ann".to_owned());
        assert_eq!(session.get::<String>("name").as_deref(), Some("ann"));
        assert_eq!(marked(&session).0, ["logins", "name"]);
        *account.user_id_mut().unwrap() += 1;
        assert_eq!(session.get::<u64>("user_id"), Some(8));
    }

    #[test]
    fn a_mutable_accessor_only_read_writes_nothing() {
        let session = session_with(None, json!({}));
        let account = TypedSession::<Account>::from_session(session.clone());
        let logins = *account.logins_mut();
        assert_eq!(logins, 0);
        assert!(
            !session.is_changed(),
            "an anonymous visitor gets no session from a read"
        );
        *account.logins_mut() += 1;
        assert_eq!(marked(&session).0, ["logins"]);
    }

    #[test]
    fn setting_none_removes_the_key() {
        let session = session_with(None, json!({"nickname": "a"}));
        let account = TypedSession::<Account>::from_session(session.clone());
        account.set_nickname(None);
        assert!(!session.contains_key("nickname"));
        assert_eq!(marked(&session), (vec![], vec!["nickname".to_owned()]));
    }

    #[test]
    fn replacing_the_struct_marks_only_the_keys_that_differ() {
        let session = session_with(None, json!({"user_id": 7, "name": "ann", "logins": 2}));
        let account = TypedSession::<Account>::from_session(session.clone());
        let mut whole = account.get().unwrap();
        assert_eq!(whole.display_name, "ann");
        whole.logins = 3;
        account.set(&whole);
        assert_eq!(marked(&session), (vec!["logins".to_owned()], vec![]));
    }

    #[test]
    fn writes_apply_the_struct_max_age_and_reads_do_not() {
        let session = session_with(None, json!({"user_id": 7}));
        let account = TypedSession::<Account>::from_session(session.clone());
        let _ = account.user_id();
        assert_eq!(session.max_age(), Some(std::time::Duration::from_secs(60)));
        account.set_logins(1);
        assert_eq!(session.max_age(), Some(std::time::Duration::from_secs(900)));
        assert_eq!(
            <Account as SessionData>::KEYS,
            ["user_id", "name", "nickname", "logins"]
        );
    }

    #[derive(crate::Session)]
    struct Grid {
        #[session(default)]
        cells: std::collections::HashMap<(u8, u8), u8>,
    }

    #[test]
    fn a_write_that_is_not_json_keeps_the_key_and_refuses_the_save() {
        let session = session_with(None, json!({"cells": {}}));
        let grid = TypedSession::<Grid>::from_session(session.clone());
        grid.cells_mut().insert((1, 2), 3);
        assert_eq!(session.get_value("cells"), Some(json!({})));
        let state = session.lock();
        let Some(crate::SaveError::Unserializable { key, type_name, .. }) = &state.refused else {
            panic!("the save is refused: {:?}", state.refused);
        };
        assert_eq!(key, "cells");
        assert!(type_name.contains("HashMap"), "{type_name}");
        assert!(state.is_changed(), "the layer runs the save that refuses");
    }

    #[test]
    fn stale_values_read_as_missing() {
        let session = session_with(None, json!({"user_id": "seven", "logins": -1}));
        let account = TypedSession::<Account>::from_session(session.clone());
        assert!(account.user_id().is_err());
        assert_eq!(account.logins(), 0);
        assert!(!session.is_changed());
    }
}
