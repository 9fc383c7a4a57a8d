//! The tower layer and its service: puts a lazy session handle into each
//! request and, after the handler, saves what changed and writes one
//! `Set-Cookie`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use axum_core::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, SET_COOKIE, VARY};
use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;

use super::commit::{self, Delivery};
use super::config::{Config, Shared};
use super::slot::{KindSlot, SessionSlot};
use crate::error::{BoxError, SaveError};
use crate::kind::{Main, SessionKind};

/// Adds sessions to an axum router.
///
/// Handlers then extract [`Session`](struct@crate::Session). A request whose handler
/// never extracts it costs no storage I/O and gets no `Set-Cookie`. After
/// the handler, a session that changed is saved and the response carries
/// exactly one `Set-Cookie`; an unchanged one writes nothing. Saves happen
/// on 2xx, 3xx and 4xx responses, not on 5xx (see
/// [`SessionLayerBuilder::with_save_on_server_error`](crate::SessionLayerBuilder::with_save_on_server_error)). A storage failure turns
/// the response into a 503 with no cookie.
///
/// ```
/// use axum::{Router, routing::get};
/// use typed_sessions::{EncryptedCookieStorage, Session, EncryptionKey, SessionLayer};
///
/// async fn handler(session: Session) -> String {
///     let visits: u64 = session.get("visits").unwrap_or(0) + 1;
///     session.insert("visits", visits).expect("a number serializes");
///     format!("{visits} visits")
/// }
///
/// let storage = EncryptedCookieStorage::new(EncryptionKey::generate());
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(SessionLayer::new(storage));
/// ```
pub struct SessionLayer<K: SessionKind = Main> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

impl<K: SessionKind> Clone for SessionLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: SessionKind> SessionLayer<K> {
    /// The name of the session cookie, as configured or chosen by default
    /// (see [`SessionLayerBuilder::with_cookie_name`](crate::SessionLayerBuilder::with_cookie_name)).
    pub fn cookie_name(&self) -> &str {
        &self.shared.config.cookie_name
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
            kind: PhantomData,
        }
    }
}

impl<K: SessionKind> std::fmt::Debug for SessionLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("kind", &K::NAME)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, K: SessionKind> Layer<S> for SessionLayer<K> {
    type Service = SessionService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

/// The service [`SessionLayer`] wraps around the router.
pub struct SessionService<S, K: SessionKind = Main> {
    inner: S,
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

impl<S: Clone, K: SessionKind> Clone for SessionService<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S, K>
where
    K: SessionKind,
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let slot = SessionSlot::new(self.shared.clone());
        request
            .extensions_mut()
            .insert(KindSlot::<K>(slot.clone(), PhantomData));
        ResponseFuture {
            state: State::Handling {
                future: self.inner.call(request),
                slot: Some(slot),
            },
        }
    }
}

type SaveFuture = Pin<Box<dyn Future<Output = Result<Option<Delivery>, SaveError>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Handling {
            #[pin]
            future: F,
            slot: Option<SessionSlot>,
        },
        Saving {
            save: SaveFuture,
            response: Option<Response>,
            slot: SessionSlot,
        },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProjection::Handling { future, slot } => {
                    let response = ready!(future.poll(cx))?.map(Body::new);
                    let slot = slot.take().expect("polled after completion");
                    let Some(session) = slot.loaded() else {
                        return Poll::Ready(Ok(response));
                    };
                    let mut response = response;
                    let shared = slot.shared();
                    add_vary(&mut response, &shared.config);
                    let status = response.status();
                    let save_allowed =
                        !status.is_server_error() || shared.config.save_on_server_error;
                    if !save_allowed || !session.lock().needs_commit() {
                        return Poll::Ready(Ok(response));
                    }
                    let save = Box::pin(
                        commit::save(shared.clone(), session.clone()).instrument(slot.span()),
                    );
                    this.state.set(State::Saving {
                        save,
                        response: Some(response),
                        slot,
                    });
                }
                StateProjection::Saving {
                    save,
                    response,
                    slot,
                } => {
                    let outcome = ready!(save.as_mut().poll(cx));
                    let mut response = response.take().expect("polled after completion");
                    let config = &slot.shared().config;
                    match outcome {
                        Ok(Some(delivery)) => {
                            let header = |value: Option<String>| {
                                value.map(HeaderValue::try_from).transpose()
                            };
                            match (header(delivery.set_cookie), header(delivery.token)) {
                                (Ok(set_cookie), Ok(token)) => {
                                    let headers = response.headers_mut();
                                    if let Some(value) = set_cookie {
                                        headers.append(SET_COOKIE, value);
                                    }
                                    if config.private_responses {
                                        keep_out_of_shared_caches(headers);
                                    }
                                    if let Some(value) = token {
                                        headers.append(config.token_response_header.clone(), value);
                                        // A token is a credential: no cache
                                        // keeps it, not even the client's
                                        // own on disk (`private` would let
                                        // it), as OAuth asks for tokens
                                        // (RFC 6749, 5.1).
                                        headers.insert(
                                            CACHE_CONTROL,
                                            HeaderValue::from_static("no-store"),
                                        );
                                    }
                                }
                                // The client would not learn of the saved
                                // session: answer that it was not saved
                                // rather than a success that lost it.
                                (Err(error), _) | (_, Err(error)) => {
                                    tracing::error!(%error, "session header is not a valid header value; answering 500");
                                    response = slot
                                        .shared()
                                        .error_responder
                                        .respond(http::StatusCode::INTERNAL_SERVER_ERROR);
                                    add_vary(&mut response, config);
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(error = %crate::error::chain(&error), "session save failed");
                            response = slot.shared().error_responder.respond(error.status());
                            add_vary(&mut response, config);
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Makes a response that sets the session cookie unstorable by shared
/// caches, which would otherwise hand one visitor's `Set-Cookie` to the
/// next: `private` is added to the handler's `Cache-Control` (a `no-store`
/// or `private` it set already is kept as it is), and `public` and
/// `s-maxage`, which would let a shared cache store it, are dropped.
fn keep_out_of_shared_caches(headers: &mut http::HeaderMap) {
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_owned())
        .filter(|directive| !directive.is_empty())
        .collect();
    let named = |directive: &str, name: &str| {
        let key = directive.split('=').next().unwrap_or_default().trim();
        key.eq_ignore_ascii_case(name)
    };
    // Only the bare directives keep a shared cache out: `private="Field"`
    // lets it store the response without those fields.
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
    {
        return;
    }
    let mut kept = vec!["private".to_owned()];
    kept.extend(
        directives
            .into_iter()
            .filter(|d| !named(d, "public") && !named(d, "s-maxage")),
    );
    if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
        headers.insert(CACHE_CONTROL, value);
    }
}

/// `Vary` names what the session came in: `Cookie`, the token header or
/// both, each once however many session layers wrap the route.
fn add_vary(response: &mut Response, config: &Config) {
    let headers = response.headers_mut();
    let mut add = |name: &str, value: HeaderValue| {
        let named = headers.get_all(VARY).iter().any(|listed| {
            listed.to_str().is_ok_and(|listed| {
                listed
                    .split(',')
                    .any(|listed| listed.trim().eq_ignore_ascii_case(name))
            })
        });
        if !named {
            headers.append(VARY, value);
        }
    };
    if config.transport.reads_cookies() {
        add("Cookie", HeaderValue::from_static("Cookie"));
    }
    if config.transport.reads_headers() {
        let name = &config.token_header;
        add(name.as_str(), HeaderValue::from(name.clone()));
    }
}
