//! How long a session lives: the one rule that decides, at every load,
//! whether a session is still alive, what its cookie's `Max-Age` is and how
//! long a store keeps its record.
//!
//! A record keeps only what the session chose for itself ([`MaxAge`]); every
//! other limit comes from the layer's configuration *at the time of the
//! load*. So a deploy that adds or lowers a lifetime binds the sessions
//! issued before it too, and a session that chose its own max age (a
//! "remember me") keeps it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default idle timeout of sessions without a max age: 30 minutes. It
/// is OWASP's upper bound for low-risk applications and ASVS 4.0.3's level 2
/// re-authentication rule (V3.3.2), the same as Java servlets' and Spring's
/// default; PHP (24 min) and ASP.NET Core (20 min) are close.
pub(crate) const DEFAULT_IDLE_TIMEOUT: u64 = 30 * 60;

/// The default absolute timeout: 12 hours from a session's creation, however
/// active it is (ASVS 4.0.3 V3.3.2, level 2). Django keeps a session two
/// weeks from its last change and Rails' cookie store until the browser
/// closes, with no bound on the server: both let a stolen cookie live on
/// indefinitely, which is what this default stops.
pub(crate) const DEFAULT_ABSOLUTE_TIMEOUT: u64 = 12 * 3600;

/// The max age [`Session::remember`](crate::Session::remember) gives a
/// session on a layer of browser-session cookies (no `max_age`): two weeks,
/// Devise's `remember_for` and Django's session age.
pub(crate) const DEFAULT_REMEMBER_MAX_AGE: u64 = 14 * 86_400;

/// What a session chose for its own lifetime, persisted with it.
///
/// A session that chose nothing follows the layer's configuration, read
/// again at every load; one that chose keeps its choice across deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaxAge {
    /// Whatever the layer is configured with when the session is loaded:
    /// its `max_age`, or a browser-session cookie bound by its idle timeout.
    #[default]
    Layer,
    /// A browser-session cookie (no `Max-Age`), whatever the layer's
    /// `max_age`; on the server, the layer's idle timeout still applies.
    BrowserSession,
    /// A persistent cookie, and an idle timeout of this many seconds on the
    /// server, whatever the layer's configuration.
    Seconds(u64),
}

impl MaxAge {
    /// Whether the session follows the layer (it chose nothing).
    pub fn is_layer(&self) -> bool {
        matches!(self, Self::Layer)
    }
}

/// The JSON form, under the record's `own_max_age` key: absent for
/// [`MaxAge::Layer`], `null` for a browser-session cookie, else the seconds.
/// (Records written before this rule carry a `max_age` key instead, which is
/// ignored: it held the layer's setting of the time, which the current one
/// replaces.)
impl Serialize for MaxAge {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Seconds(seconds) => serializer.serialize_some(seconds),
            Self::Layer | Self::BrowserSession => serializer.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for MaxAge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<u64>::deserialize(deserializer)? {
            Some(seconds) => Self::Seconds(seconds),
            None => Self::BrowserSession,
        })
    }
}

/// When a read counts as activity, so the idle limit (the session's max
/// age, or the idle timeout of browser-session sessions) measures the time
/// since its last *request* rather than since its last change: the layer
/// then writes the session's times (never its data) after the handler, in
/// one command of the store (Redis: one script; Memcached: one `set` with
/// the CAS of the load; SQL: one `UPDATE`; memory: in place; a cookie
/// store: the cookie sealed again), and a persistent cookie goes out again
/// with its new `Max-Age`.
///
/// Set with [`SessionLayerBuilder::with_refresh`](crate::SessionLayerBuilder::with_refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Refresh {
    /// A read after more than half of the idle limit writes the times: a
    /// session ends after at most its idle limit without a request (at
    /// least half of it), and costs at most one write per half of it. The
    /// default: sliding expiry for the price of a rare write.
    #[default]
    HalfIdle,
    /// Every request that loads the session writes its times: the idle
    /// limit counts from the last request exactly, for one write per
    /// request (at most one per second: times are whole seconds). On Redis,
    /// [`RedisStorage::with_ttl_refresh_on_read`](crate::RedisStorage::with_ttl_refresh_on_read)
    /// folds it into the load.
    EveryRequest,
    /// Only a change writes: reads cost no write, and the idle limit counts
    /// from the last change, so a user who only reads is logged out after
    /// it.
    OnChange,
}

/// The times of a stored session that decide when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) created: u64,
    pub(crate) updated: u64,
    /// The max age the session chose.
    pub(crate) max_age: MaxAge,
    /// The time the session chose to end at, if any.
    pub(crate) expires_at: Option<u64>,
}

/// The lifetimes a layer is configured with; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    /// The cookie's `Max-Age` and the idle timeout of sessions that chose
    /// nothing; `None` makes browser-session cookies.
    pub(crate) max_age: Option<u64>,
    /// The idle timeout of browser-session sessions.
    pub(crate) idle_timeout: Option<u64>,
    /// The limit on a session's whole life from its creation.
    pub(crate) absolute_timeout: Option<u64>,
    /// When a read writes the session's times.
    pub(crate) refresh: Refresh,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            max_age: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            absolute_timeout: Some(DEFAULT_ABSOLUTE_TIMEOUT),
            refresh: Refresh::HalfIdle,
        }
    }
}

impl Lifetimes {
    /// The cookie's `Max-Age` for a session that chose `own`; `None` for a
    /// browser-session cookie.
    pub(crate) fn cookie_max_age(&self, own: MaxAge) -> Option<u64> {
        match own {
            MaxAge::Layer => self.max_age,
            MaxAge::BrowserSession => None,
            MaxAge::Seconds(seconds) => Some(seconds),
        }
    }

    /// How long the session may go without a write: its max age, or the
    /// idle timeout of browser-session sessions.
    pub(crate) fn idle_limit(&self, own: MaxAge) -> Option<u64> {
        self.cookie_max_age(own).or(self.idle_timeout)
    }

    /// How long the session may live from its creation: the absolute
    /// timeout, but never less than its max age, so that a session which
    /// chose a long life ("remember me") gets it once.
    pub(crate) fn absolute_limit(&self, own: MaxAge) -> Option<u64> {
        let max_age = self.cookie_max_age(own).unwrap_or(0);
        self.absolute_timeout.map(|limit| limit.max(max_age))
    }

    /// Whether a session with `times` has ended at `now`: past its idle
    /// limit since its last write, its absolute limit since its creation,
    /// or the time it chose to end at.
    ///
    /// Times are whole seconds, read from the clock rounded down, so a
    /// difference of `limit` whole seconds may be a little less than `limit`
    /// of real time: a session ends only once `now` is *past* the limit, so
    /// it never ends early, and at most a second late.
    pub(crate) fn has_ended(&self, times: Times, now: u64) -> bool {
        let past = |from: u64, limit: Option<u64>| {
            limit.is_some_and(|limit| now > from.saturating_add(limit))
        };
        past(times.updated, self.idle_limit(times.max_age))
            || past(times.created, self.absolute_limit(times.max_age))
            || times.expires_at.is_some_and(|end| now > end)
    }

    /// The cookie's `Max-Age` for a session with `times` written at `now`:
    /// its max age, cut short by the time it chose to end at; `None` for a
    /// browser-session cookie.
    pub(crate) fn cookie_max_age_at(&self, times: Times, now: u64) -> Option<u64> {
        let max_age = self.cookie_max_age(times.max_age)?;
        Some(match times.expires_at {
            Some(end) => max_age.min(end.saturating_sub(now)),
            None => max_age,
        })
    }

    /// How long after a write at `now` a store must keep the record of a
    /// session with `times`: its idle limit, cut short by the time it chose
    /// to end at; `None` when nothing limits it.
    pub(crate) fn store_limit_at(&self, times: Times, now: u64) -> Option<u64> {
        let until_end = times.expires_at.map(|end| end.saturating_sub(now));
        match (self.idle_limit(times.max_age), until_end) {
            (Some(idle), Some(end)) => Some(idle.min(end)),
            (idle, end) => idle.or(end),
        }
    }

    /// Whether a session last written at `updated` and read at `now` is to
    /// be written again (its times only), by the [`Refresh`] policy: never
    /// for a session without an idle limit, nor twice in one second.
    pub(crate) fn needs_refresh(&self, own: MaxAge, updated: u64, now: u64) -> bool {
        let Some(limit) = self.idle_limit(own) else {
            return false;
        };
        let idle = now.saturating_sub(updated);
        match self.refresh {
            Refresh::HalfIdle => idle.saturating_mul(2) > limit,
            Refresh::EveryRequest => idle > 0,
            Refresh::OnChange => false,
        }
    }

    /// The max age "remember me" gives: the layer's, or
    /// [`DEFAULT_REMEMBER_MAX_AGE`] on a layer of browser-session cookies.
    pub(crate) fn remember_max_age(&self) -> u64 {
        self.max_age.unwrap_or(DEFAULT_REMEMBER_MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYER: Lifetimes = Lifetimes {
        max_age: Some(600),
        idle_timeout: Some(100),
        absolute_timeout: Some(1000),
        refresh: Refresh::HalfIdle,
    };

    /// The times of a session created at 0 and written at `updated`.
    fn times(max_age: MaxAge, updated: u64) -> Times {
        Times {
            created: 0,
            updated,
            max_age,
            expires_at: None,
        }
    }

    #[test]
    fn a_session_that_chose_nothing_follows_the_layer() {
        assert_eq!(LAYER.cookie_max_age(MaxAge::Layer), Some(600));
        assert_eq!(LAYER.idle_limit(MaxAge::Layer), Some(600));
        let browser = Lifetimes {
            max_age: None,
            ..LAYER
        };
        assert_eq!(browser.cookie_max_age(MaxAge::Layer), None);
        assert_eq!(browser.idle_limit(MaxAge::Layer), Some(100));
    }

    #[test]
    fn a_browser_session_is_still_bound_by_the_idle_timeout() {
        assert_eq!(LAYER.cookie_max_age(MaxAge::BrowserSession), None);
        assert_eq!(LAYER.idle_limit(MaxAge::BrowserSession), Some(100));
        assert!(!LAYER.has_ended(times(MaxAge::BrowserSession, 0), 100));
        assert!(LAYER.has_ended(times(MaxAge::BrowserSession, 0), 101));
    }

    #[test]
    fn an_own_max_age_replaces_the_layers_and_stretches_the_absolute_limit() {
        let own = MaxAge::Seconds(5000);
        assert_eq!(LAYER.idle_limit(own), Some(5000));
        assert_eq!(LAYER.absolute_limit(own), Some(5000));
        assert!(!LAYER.has_ended(times(own, 4000), 5000));
        assert!(LAYER.has_ended(times(own, 4000), 5001));
        // A shorter own max age leaves the absolute timeout as it is.
        assert_eq!(LAYER.absolute_limit(MaxAge::Seconds(60)), Some(1000));
    }

    #[test]
    fn the_absolute_timeout_ends_an_active_session() {
        assert!(!LAYER.has_ended(times(MaxAge::Layer, 999), 1000));
        assert!(LAYER.has_ended(times(MaxAge::Layer, 999), 1001));
    }

    #[test]
    fn no_limits_means_no_end() {
        let forever = Lifetimes {
            max_age: None,
            idle_timeout: None,
            absolute_timeout: None,
            refresh: Refresh::HalfIdle,
        };
        assert!(!forever.has_ended(times(MaxAge::Layer, 0), u64::MAX));
        assert!(!forever.needs_refresh(MaxAge::Layer, 0, u64::MAX));
    }

    #[test]
    fn a_chosen_end_ends_the_session_and_shortens_cookie_and_store() {
        let ending = Times {
            expires_at: Some(300),
            ..times(MaxAge::Layer, 100)
        };
        assert!(!LAYER.has_ended(ending, 300));
        assert!(LAYER.has_ended(ending, 301));
        assert_eq!(LAYER.cookie_max_age_at(ending, 100), Some(200));
        assert_eq!(LAYER.store_limit_at(ending, 100), Some(200));
        let far = Times {
            expires_at: Some(1_000_000),
            ..ending
        };
        assert_eq!(LAYER.cookie_max_age_at(far, 100), Some(600));
        assert_eq!(LAYER.store_limit_at(far, 100), Some(600));
        let browser = Times {
            max_age: MaxAge::BrowserSession,
            ..ending
        };
        assert_eq!(LAYER.cookie_max_age_at(browser, 100), None);
        let unlimited = Lifetimes {
            max_age: None,
            idle_timeout: None,
            absolute_timeout: None,
            refresh: Refresh::HalfIdle,
        };
        assert_eq!(unlimited.store_limit_at(ending, 100), Some(200));
    }

    #[test]
    fn the_refresh_policy_decides_which_reads_write() {
        let every = Lifetimes {
            refresh: Refresh::EveryRequest,
            ..LAYER
        };
        assert!(every.needs_refresh(MaxAge::Layer, 1000, 1001));
        assert!(
            !every.needs_refresh(MaxAge::Layer, 1000, 1000),
            "not twice in a second"
        );
        let on_change = Lifetimes {
            refresh: Refresh::OnChange,
            ..LAYER
        };
        assert!(!on_change.needs_refresh(MaxAge::Layer, 1000, 1599));
        let unlimited = Lifetimes {
            idle_timeout: None,
            ..every
        };
        assert!(!unlimited.needs_refresh(MaxAge::BrowserSession, 1000, 5000));
    }

    #[test]
    fn a_read_past_half_the_idle_time_refreshes() {
        assert!(!LAYER.needs_refresh(MaxAge::BrowserSession, 1000, 1050));
        assert!(LAYER.needs_refresh(MaxAge::BrowserSession, 1000, 1051));
        assert!(!LAYER.needs_refresh(MaxAge::Layer, 1000, 1300));
        assert!(LAYER.needs_refresh(MaxAge::Layer, 1000, 1301));
    }

    #[test]
    fn the_defaults_bound_every_session() {
        let defaults = Lifetimes::default();
        assert_eq!(defaults.cookie_max_age(MaxAge::Layer), None);
        assert_eq!(defaults.idle_limit(MaxAge::Layer), Some(30 * 60));
        assert_eq!(defaults.absolute_limit(MaxAge::Layer), Some(12 * 3600));
    }

    #[test]
    fn json_form_tells_a_browser_session_from_seconds() {
        let seconds: MaxAge = serde_json::from_str("60").unwrap();
        assert_eq!(seconds, MaxAge::Seconds(60));
        let browser: MaxAge = serde_json::from_str("null").unwrap();
        assert_eq!(browser, MaxAge::BrowserSession);
        assert_eq!(serde_json::to_string(&MaxAge::Seconds(60)).unwrap(), "60");
        assert_eq!(
            serde_json::to_string(&MaxAge::BrowserSession).unwrap(),
            "null"
        );
    }
}
