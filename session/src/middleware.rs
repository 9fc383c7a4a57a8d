//! The tower layer: puts a lazy session handle into each request and, after
//! the handler, saves what changed and writes one `Set-Cookie`.

use std::future::Future;
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

use crate::commit;
use crate::config::{SessionLayerBuilder, Shared};
use crate::error::{BoxError, SaveError};
use crate::slot::SessionSlot;
use crate::storage::SessionStorage;

/// Adds sessions to an axum router.
///
/// Handlers then extract [`Session`](struct@crate::Session). A request whose handler
/// never extracts it costs no storage I/O and gets no `Set-Cookie`. After
/// the handler, a session that changed is saved and the response carries
/// exactly one `Set-Cookie`; an unchanged one writes nothing. Saves happen
/// on 2xx, 3xx and 4xx responses, not on 5xx (see
/// [`SessionLayerBuilder::save_on_server_error`]). A storage failure turns
/// the response into a 503 with no cookie.
///
/// ```
/// use axum::{Router, routing::get};
/// use typed_sessions::{EncryptedCookieStorage, Session, SessionKey, SessionLayer};
///
/// async fn handler(session: Session) -> String {
///     let visits: u64 = session.get("visits").unwrap_or(0) + 1;
///     session.insert("visits", visits).expect("a number serializes");
///     format!("{visits} visits")
/// }
///
/// let storage = EncryptedCookieStorage::new(SessionKey::generate());
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(SessionLayer::new(storage));
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// A layer over `storage` with the default configuration (see
    /// [`SessionLayerBuilder`]).
    ///
    /// # Panics
    ///
    /// If the storage's own settings are invalid (for example a zero TTL);
    /// [`SessionLayer::builder`] and [`SessionLayerBuilder::build`] return
    /// that as a [`ConfigError`](crate::ConfigError) instead.
    pub fn new<Kind>(storage: impl SessionStorage<Kind>) -> Self {
        Self::builder(storage)
            .build()
            .unwrap_or_else(|error| panic!("invalid session configuration: {error}"))
    }

    /// Starts configuring a layer over `storage`.
    pub fn builder<Kind>(storage: impl SessionStorage<Kind>) -> SessionLayerBuilder {
        SessionLayerBuilder::new(storage)
    }

    /// The name of the session cookie, as configured or chosen by default
    /// (see [`SessionLayerBuilder::cookie_name`]).
    pub fn cookie_name(&self) -> &str {
        &self.shared.config.cookie_name
    }

    pub(crate) fn from_shared(shared: Shared) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around the router.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
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
        request.extensions_mut().insert(slot.clone());
        ResponseFuture {
            state: State::Handling {
                future: self.inner.call(request),
                slot: Some(slot),
            },
        }
    }
}

type SaveFuture = Pin<Box<dyn Future<Output = Result<Option<String>, SaveError>> + Send>>;

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
                    add_vary_cookie(&mut response);
                    let shared = slot.shared();
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
                    match outcome {
                        Ok(Some(cookie)) => match HeaderValue::try_from(cookie) {
                            Ok(value) => {
                                response.headers_mut().append(SET_COOKIE, value);
                                if slot.shared().config.private_responses {
                                    keep_out_of_shared_caches(response.headers_mut());
                                }
                            }
                            Err(error) => {
                                tracing::error!(%error, "session cookie is not a valid header");
                            }
                        },
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(error = %crate::error::chain(&error), "session save failed");
                            response = slot.shared().error_responder.respond(error.status());
                            add_vary_cookie(&mut response);
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

fn add_vary_cookie(response: &mut Response) {
    response
        .headers_mut()
        .append(VARY, HeaderValue::from_static("Cookie"));
}
