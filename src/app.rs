//! Building and running the server, shared by `main` and the tests: `Application::build`
//! connects the store (running migrations), binds the listener (port 0 works), and
//! `run_until_stopped` serves until the shutdown future resolves.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::{JwtKeys, RateLimiter};
use crate::calls::callbacks::CallbackScheduler;
use crate::calls::{self, CallService};
use crate::events::EventBus;
use crate::http::{self, AppState};
use crate::knowledge::edge::EdgeVectorStore;
use crate::knowledge::ingest::KnowledgeBase;
use crate::knowledge::qdrant::QdrantVectorStore;
use crate::providers::openai::OpenAiEmbedder;
use crate::settings::Settings;
use crate::store::Store;
use crate::texts::Texter;
use crate::webhooks::Webhooks;
use actors::ports::{Embedder, EventSink, VectorStore};

/// A built server, bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Places due callbacks, when this server can dial out.
    callbacks: Option<CallbackScheduler>,
    /// Set when shutdown begins: every part that must stop or refuse watches it.
    draining: tokio::sync::watch::Sender<bool>,
}

impl Application {
    /// Connects every backing service the settings name and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Installed first, so nothing recorded while starting is lost.
        crate::metrics_export::handle();
        let store = Store::open(&settings.database_url, settings.database_kind)
            .await
            .with_context(|| {
                format!("opening the database {}", settings.database_url_for_logs())
            })?;
        let limiter = match &settings.redis_url {
            Some(url) => RateLimiter::redis(url, settings.redis_key_prefix.clone())
                .await
                .context("connecting to REDIS_URL")?,
            None => RateLimiter::local(),
        };
        let webhooks = Webhooks::new(store.clone(), settings.webhooks)?;
        let tap = Some(webhooks.tap());
        let events = match &settings.redis_url {
            Some(url) => EventBus::redis(url, settings.redis_key_prefix.clone(), tap)
                .await
                .context("connecting to REDIS_URL for events")?,
            None => EventBus::local(tap).await?,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {} (SWITCHBOARD_LISTEN)", settings.listen))?;
        let public_url: Arc<str> = settings.public_url_or(listener.local_addr()?).into();
        let twilio = calls::twilio_client(&settings)?;
        let texter = Texter::new(store.clone(), twilio.clone(), &public_url, events.clone());
        let knowledge = Arc::new(knowledge_base(&settings, &store, events.clone())?);
        match store.fail_interrupted_documents().await {
            Ok(0) => {}
            Ok(failed) => tracing::warn!(
                failed,
                "documents whose reading a stopped server left unfinished were marked failed"
            ),
            Err(error) => tracing::warn!(%error, "unfinished documents could not be checked"),
        }
        let calls = CallService::start(
            &settings,
            &store,
            (twilio, texter.clone()),
            &knowledge,
            events.clone(),
        )
        .await?;
        if calls.is_none() {
            tracing::warn!("OPENAI_API_KEY and ELEVENLABS_API_KEY are unset: calls are answered with \"not set up yet\"");
        }
        let callbacks = calls
            .as_ref()
            .filter(|calls| calls.places_outbound())
            .map(|calls| {
                CallbackScheduler::new(
                    store.clone(),
                    calls.clone(),
                    Arc::clone(&public_url),
                    settings.callback_poll,
                )
            });
        let (draining, drain_started) = tokio::sync::watch::channel(false);
        let state = AppState {
            draining: drain_started,
            calls,
            texter,
            knowledge,
            events,
            webhooks,
            store,
            jwt: JwtKeys::new(&settings.jwt_secret),
            limiter: Arc::new(limiter),
            settings: Arc::new(settings),
            public_url,
        };
        Ok(Self {
            listener,
            state,
            callbacks,
            draining,
        })
    }

    /// The bound address (the real port when the settings asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The store, for tests that check what a request left behind.
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` turns not-ready so load
    /// balancers send nothing new, new calls are refused politely, event streams are told to
    /// reconnect elsewhere, live calls get `DRAIN_TIMEOUT` to finish (then hear a goodbye and
    /// are hung up), and only then does the HTTP server stop, letting in-flight requests end.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, public_url = %self.state.public_url, "switchboard is serving");
        let store = self.state.store.clone();
        let calls = self.state.calls.clone();
        let drain_timeout = self.state.settings.drain_timeout;
        let draining = self.draining;
        let stopping = draining.subscribe();
        let dispatcher = Arc::clone(&self.state.webhooks).spawn(stopping.clone());
        // No callback is dialled once draining begins: it would be refused anyway.
        let callbacks = self
            .callbacks
            .map(|scheduler| scheduler.spawn(stopping.clone()));
        if let Some(addr) = self.state.settings.metrics_listen {
            let listener = TcpListener::bind(addr).await?;
            let store = self.state.store.clone();
            let metrics = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let store = store.clone();
                    async move { http::render_metrics(&store) }
                }),
            );
            tracing::info!(%addr, "metrics are served on their own address");
            tokio::spawn(async move { axum::serve(listener, metrics).await });
        }
        let app = http::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stopped.await;
                })
                .into_future(),
        );
        shutdown.await;
        tracing::info!(
            drain_timeout_secs = drain_timeout.as_secs(),
            "draining: no new calls, live calls may finish"
        );
        let _ = draining.send(true);
        if let Some(calls) = &calls {
            calls.drain(drain_timeout).await;
        }
        let _ = stop_http.send(());
        let served = server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        if let Some(scheduler) = callbacks {
            if let Err(error) = scheduler.await {
                tracing::warn!(%error, "the callback scheduler ended badly");
            }
        }
        let _ = dispatcher.await;
        if let Some(calls) = calls {
            calls.stop().await;
        }
        store.close().await;
        served
    }
}

/// The knowledge base: the Qdrant server `QDRANT_URL` names, or else the embedded vector
/// store under the data directory; with dense vectors from the OpenAI-compatible endpoint
/// when one is configured (words alone otherwise).
fn knowledge_base(
    settings: &Settings,
    store: &Store,
    events: Arc<dyn EventSink>,
) -> anyhow::Result<KnowledgeBase> {
    let vectors: Arc<dyn VectorStore> = match &settings.qdrant {
        Some(server) => Arc::new(
            QdrantVectorStore::new(&server.url, server.api_key.as_ref(), &server.collection)
                .context("QDRANT_URL")?,
        ),
        None => {
            let dir = &settings.data_dir;
            Arc::new(EdgeVectorStore::new(dir).with_context(|| {
                format!("opening the knowledge store in {}/knowledge", dir.display())
            })?)
        }
    };
    let embedder = match &settings.voice {
        Some(voice) => {
            Some(Arc::new(OpenAiEmbedder::new(calls::openai_client(voice)?)) as Arc<dyn Embedder>)
        }
        None => None,
    };
    Ok(KnowledgeBase::new(
        store.clone(),
        (vectors, embedder),
        events,
    ))
}
