//! Session kinds: several independent sessions in one app (a user session
//! and an admin session, say), each with its own layer, cookie, storage and
//! lifetimes, told apart by a marker type so that no handler reads one
//! kind's data through the other's handle.

/// A kind of session: a marker type naming one of an app's independent
/// sessions. [`Main`] is the kind of every session that names none.
///
/// ```
/// use typed_sessions::{MemoryStorage, Session, SessionKind, SessionLayer};
///
/// /// The back office's session, beside the shop's.
/// struct Admin;
///
/// impl SessionKind for Admin {
///     const NAME: &'static str = "admin";
/// }
///
/// async fn dashboard(user: Session, admin: Session<Admin>) -> String {
///     let user: Option<String> = user.get("user");
///     let admin: Option<String> = admin.get("user");
///     format!("shop: {user:?}, back office: {admin:?}")
/// }
///
/// let admin_layer = SessionLayer::builder(MemoryStorage::new())
///     .with_kind::<Admin>()
///     .build()
///     .expect("valid configuration");
/// // Its cookie is the main one's with the kind's name appended.
/// assert_eq!(admin_layer.cookie_name(), "__Host-session_admin");
/// ```
pub trait SessionKind: Send + Sync + 'static {
    /// The kind's name: in the default cookie name (appended to the main
    /// one's after `_`), in logs, and in the error of an extractor whose
    /// layer is missing. ASCII letters, digits, `-` and `_`.
    const NAME: &'static str;
}

/// The kind of the sessions that name none: `Session` is `Session<Main>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Main;

impl SessionKind for Main {
    const NAME: &'static str = "session";
}

/// Whether `K` is [`Main`].
pub(crate) fn is_main<K: SessionKind>() -> bool {
    std::any::TypeId::of::<K>() == std::any::TypeId::of::<Main>()
}

/// What a store indexes the sessions of `user` of the session kind `kind`
/// under: the user id for the main kind, and the kind's name, a NUL and
/// the user id for another (a user id never holds a NUL, see
/// `users::user_problem`, so no two pairs share one).
pub(crate) fn user_scope(kind: Option<&str>, user: &str) -> String {
    match kind {
        None => user.to_owned(),
        Some(kind) => format!("{kind}\0{user}"),
    }
}
