//! Flash messages: kept in the session until they are read once, the
//! "saved!" a page shows after the redirect that followed a form.

use std::marker::PhantomData;

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::extract::SessionRejection;
use crate::kind::{Main, SessionKind};
use crate::session::{Session, wrong_type};

/// The session key that holds the pending flash messages, as a JSON array.
pub(crate) const FLASH_KEY: &str = "_flash";

impl Session {
    /// The session key that holds the pending flash messages, as a JSON
    /// array: `"_flash"`, as aiohttp_session's `aiohttp_flash` keeps them.
    pub const FLASH_KEY: &'static str = FLASH_KEY;
}

impl<K: SessionKind> Session<K> {
    /// Adds a flash message, kept in the session until
    /// [`take_flashes`](Session::take_flashes) reads it. Marks the flash key
    /// changed; fails, changing nothing, only if `message` cannot be JSON.
    pub fn flash<T: Serialize>(&self, message: T) -> Result<(), serde_json::Error> {
        let message = serde_json::to_value(message)?;
        let mut state = self.lock();
        let mut messages = match state.record.data.remove(FLASH_KEY) {
            Some(Value::Array(messages)) => messages,
            // Not a list (an app wrote the key itself): start one.
            Some(_) | None => Vec::new(),
        };
        messages.push(message);
        state
            .record
            .data
            .insert(FLASH_KEY.to_owned(), Value::Array(messages));
        state.changes.record_set(FLASH_KEY);
        Ok(())
    }

    /// The pending flash messages, oldest first, removed from the session.
    /// With none pending the session is left unchanged (and not saved for
    /// it). A message that is not a `T` is dropped with a warning naming
    /// the type, never the message.
    pub fn take_flashes<T: DeserializeOwned>(&self) -> Vec<T> {
        let mut state = self.lock();
        let Some(messages) = state.record.data.remove(FLASH_KEY) else {
            return Vec::new();
        };
        state.changes.record_removed(FLASH_KEY);
        drop(state);
        let Value::Array(messages) = messages else {
            wrong_type::<Vec<T>>(FLASH_KEY);
            return Vec::new();
        };
        messages
            .into_iter()
            .filter_map(|message| {
                T::deserialize(message)
                    .inspect_err(|_| wrong_type::<T>(FLASH_KEY))
                    .ok()
            })
            .collect()
    }

    /// Whether flash messages are pending, without taking them.
    pub fn has_flashes(&self) -> bool {
        self.lock().record.data.contains_key(FLASH_KEY)
    }
}

/// The session's flash messages of type `T`, as an extractor (of the
/// session of kind `K`, see [`SessionKind`]).
///
/// ```
/// use axum::response::Redirect;
/// use typed_sessions::Flash;
///
/// async fn save(flash: Flash<String>) -> Redirect {
///     flash.push("Saved!".to_owned());
///     Redirect::to("/")
/// }
///
/// async fn page(flash: Flash<String>) -> String {
///     flash.take().join("\n")
/// }
/// ```
pub struct Flash<T, K: SessionKind = Main> {
    session: Session<K>,
    messages: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned, K: SessionKind> Flash<T, K> {
    /// Adds a message for a later request (see [`Session::flash`]). A
    /// message that is not JSON (a map with non-string keys) is not added,
    /// and the save after the handler refuses with
    /// [`SaveError::Unserializable`](crate::SaveError::Unserializable):
    /// the request answers with an error rather than lose the message.
    pub fn push(&self, message: T) {
        if let Err(error) = self.session.flash(message) {
            self.session.refuse_write::<T>(FLASH_KEY, error);
        }
    }

    /// The pending messages, removed from the session (see
    /// [`Session::take_flashes`]).
    pub fn take(&self) -> Vec<T> {
        self.session.take_flashes()
    }

    /// The session the messages are kept in.
    pub fn session(&self) -> &Session<K> {
        &self.session
    }
}

impl<T, K: SessionKind> Clone for Flash<T, K> {
    fn clone(&self) -> Self {
        Self {
            session: self.session.clone(),
            messages: PhantomData,
        }
    }
}

impl<T, K: SessionKind> std::fmt::Debug for Flash<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flash")
            .field("type", &std::any::type_name::<T>())
            .field("kind", &K::NAME)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, T, K: SessionKind> FromRequestParts<S> for Flash<T, K> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::<K>::from_request_parts(parts, state).await?;
        Ok(Self {
            session,
            messages: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::session_with;

    #[test]
    fn messages_are_read_once_in_order() {
        let session = session_with(None, serde_json::json!({}));
        session.flash("saved").unwrap();
        session.flash("and mailed").unwrap();
        assert!(session.has_flashes());
        assert_eq!(session.take_flashes::<String>(), ["saved", "and mailed"]);
        assert!(session.take_flashes::<String>().is_empty());
        assert!(!session.has_flashes());
    }

    #[test]
    fn reading_none_changes_nothing() {
        let session = session_with(None, serde_json::json!({"a": 1}));
        assert!(session.take_flashes::<String>().is_empty());
        assert!(!session.is_changed(), "nothing to save for an empty read");
    }

    #[test]
    fn adding_and_consuming_mark_only_the_flash_key() {
        let session = session_with(None, serde_json::json!({"_flash": ["old"], "a": 1}));
        assert_eq!(session.take_flashes::<String>(), ["old"]);
        {
            let state = session.lock();
            assert_eq!(
                state.changes.removed_keys().collect::<Vec<_>>(),
                [FLASH_KEY]
            );
            assert_eq!(state.changes.set_keys().count(), 0);
        }
        session.flash(1).unwrap();
        let state = session.lock();
        assert_eq!(state.changes.set_keys().collect::<Vec<_>>(), [FLASH_KEY]);
    }

    #[test]
    fn a_message_of_another_type_is_dropped_not_failed() {
        let session = session_with(None, serde_json::json!({"_flash": ["text", 2]}));
        assert_eq!(session.take_flashes::<u32>(), [2]);
    }
}
