//! Choosing where a request goes: providers and their accounts, quota windows, routes and
//! strategies, health and cooldowns. `Pool::plan` admits a request; each `Attempt` reports how
//! it went. State is in memory behind one mutex (admission is check-and-reserve under it, so
//! concurrent requests never exceed a quota) and is saved off the hot path to SQLite.
//!
//! The request path:
//! ```text
//! let mut plan = pool.plan(ingress, model, &RequestFacts { est_tokens, max_output, has_tools, has_images, caller })?;
//! while let Some(mut attempt) = plan.next_attempt() {
//!     // send to attempt.target() (model in the body: attempt.send_model(), if Some)
//!     match send().await {
//!         Err(e) => if attempt.report(Outcome::Failed(Failure::from(&e))) == Verdict::TryNext { continue } else { return e },
//!         Ok(resp) => {
//!             attempt.observe_headers(resp.headers());
//!             // read the error body, or peek the first SSE event of a 200
//!             match classify(status, resp.headers(), &peeked, pool.clock().now_ms()) {
//!                 Some(f) => match attempt.report(Outcome::Failed(f)) {
//!                     Verdict::TryNext => continue,
//!                     _ => return /* the provider's answer as it is */,
//!                 },
//!                 None => { attempt.mark_first_byte(); /* relay; at the end: */ attempt.report(Outcome::Success(usage)); }
//!             }
//!         }
//!     }
//! }
//! Err(plan.exhausted()) // 429 with retry-after, in the caller's dialect
//! ```

mod admission;
mod budget;
pub mod caller;
mod credentials;
pub mod failure;
pub mod headers;
mod redis;
pub mod show;
mod slots;
mod state;
pub mod status;
pub mod store;
pub mod upstream;
mod window;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

pub use admission::{Attempt, Outcome, Plan, RequestFacts, Verdict, DEFAULT_OUTPUT_ALLOWANCE};
pub use budget::{Bound, Budget, Offer};
pub use caller::Caller;
pub use failure::{classify, Cause, Failure, Origin, StreamWatch};
pub use state::Clock;
pub use status::PoolStatus;
pub use upstream::UpstreamError;

use crate::config::{Config, PoolSettings, Provider, ProviderAuth, Route, StoreLocation, Strategy};
use crate::dialect::Dialect;
use slots::{Lane, Slot, State};
use state::KeyState;
use store::Store;

/// One place a request can be sent.
#[derive(Debug, Clone)]
pub struct Target {
    /// The provider as seen through one account: `auth` is that account's.
    pub provider: Arc<Provider>,
    /// The dialect the target speaks; differs from the ingress dialect only through translation.
    pub dialect: Dialect,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error("no route, provider model or default upstream for {ingress} requests{}", model.as_ref().map(|m| format!(" asking for `{m}`")).unwrap_or_default())]
    NoRoute { ingress: Dialect, model: Option<String> },
    #[error("provider `{provider}` is off because {var} is not set; set it and restart")]
    KeyMissing { provider: String, var: String },
    /// No target can take this request at all (context window, tools, images).
    #[error("no target of `{model}` can take this request: {reasons}")]
    NoCapableTarget { model: String, reasons: String },
    /// The request is larger than every target takes, even fitted: what each needs and takes.
    #[error("the request fits no target of `{model}`, even after fitting: {reasons}")]
    NoFit { model: String, reasons: String },
    /// Every target is out of quota, cooling down or disabled right now.
    #[error("every target of `{model}` is busy or out of quota{}: {reasons}", retry_after.map(|d| format!(" (retry in {}s)", d.as_secs().max(1))).unwrap_or_default())]
    Exhausted { model: String, retry_after: Option<Duration>, reasons: String },
}

impl PoolError {
    pub fn origin(&self) -> Origin {
        match self {
            PoolError::NoCapableTarget { .. } | PoolError::NoFit { .. } => Origin::Client,
            _ => Origin::Internal,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            PoolError::NoRoute { .. } => 404,
            PoolError::KeyMissing { .. } => 503,
            PoolError::NoCapableTarget { .. } => 400,
            PoolError::NoFit { .. } => 413,
            PoolError::Exhausted { .. } => 429,
        }
    }

    /// For a `retry-after` header on the answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PoolError::Exhausted { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PoolError::NoRoute { .. } => "no_route",
            PoolError::KeyMissing { .. } => "provider_key_missing",
            PoolError::NoCapableTarget { .. } => "no_capable_target",
            PoolError::NoFit { .. } => "request_too_large",
            PoolError::Exhausted { .. } => "pool_exhausted",
        }
    }
}

/// One account of one provider, as the pool tracks it.
#[derive(Debug)]
struct AccountRef {
    provider: usize,
    account: usize,
    /// The provider with this account's auth, handed out in `Target`s.
    view: Arc<Provider>,
    /// Stable identity in the store: provider name, base URL and account label.
    key: String,
}

/// A resolved target before accounts are expanded.
#[derive(Debug, Clone)]
struct Resolved {
    provider: usize,
    /// The model name the provider gets; `None` keeps the request's own.
    send_model: Option<String>,
    /// The model name the quota is counted under.
    model: String,
}

struct Routing {
    /// The name the plan is known by (route name or model) and its strategy.
    label: String,
    strategy: Strategy,
    max_wait_ms: u64,
    targets: Vec<Resolved>,
}

pub(crate) struct Inner {
    providers: Vec<Arc<Provider>>,
    accounts: Vec<AccountRef>,
    routes: Vec<Route>,
    default_upstream: HashMap<Dialect, Vec<usize>>,
    settings: PoolSettings,
    clock: Clock,
    state: Mutex<State>,
    store: Option<Arc<Store>>,
    /// `[state] redis_url`: the state shared with other instances (a reload keeps the first).
    redis: Option<Arc<crate::shared::Redis>>,
    /// Replaced by a reload: late reports of its in-flight attempts no longer reach the store.
    retired: AtomicBool,
    /// The pool a reload built from this one; set under `state`'s lock. Attempts reserved here
    /// before the reload settle there, where their reservations were carried.
    successor: OnceLock<Arc<Inner>>,
}

/// The provider pool. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// The pool for `cfg`, with the store the config names (`[pool] store`); if the store cannot
    /// be opened the pool runs in memory and says so once.
    pub fn new(cfg: &Config) -> Pool {
        Pool::with_clock(cfg, Clock::system())
    }

    pub fn with_clock(cfg: &Config, clock: Clock) -> Pool {
        let shared = redis::start(cfg);
        match cfg.pool.store.path().map(|path| Store::open(&path)) {
            None => Pool::build(cfg, clock, None, shared, HashMap::new()),
            Some(Ok((s, saved))) => Pool::build(cfg, clock, Some(Arc::new(s)), shared, saved),
            Some(Err(e)) => {
                tracing::warn!("{e}; quota counters and cooldowns are kept in memory only");
                Pool::build(cfg, clock, None, shared, HashMap::new())
            }
        }
    }

    /// A pool saving to `store` (`None`: memory only), for tests and tools.
    pub fn with_store(cfg: &Config, clock: Clock, store: &StoreLocation) -> Result<Pool, store::StoreError> {
        Ok(match store.path().map(|p| Store::open(&p)).transpose()? {
            Some((s, saved)) => Pool::build(cfg, clock, Some(Arc::new(s)), None, saved),
            None => Pool::build(cfg, clock, None, None, HashMap::new()),
        })
    }

    /// The pool for a reloaded config (SIGHUP, file change): counters, cooldowns and latencies
    /// carry over for every account and model that still exists (same provider name, base URL
    /// and account label); accounts disabled by a refused key get another chance. In-flight
    /// attempts of `self` keep their connection; their reservations (concurrency included) are
    /// carried, and they settle in the new pool. The store stays the one opened first.
    pub fn reload(&self, cfg: &Config) -> Pool {
        let old = &self.inner;
        // Held until the successor is in place: a report either lands here before the snapshot
        // (and is carried) or finds the successor and lands there.
        let st = old.lock();
        let mut carried: HashMap<String, KeyState> =
            st.fixed.iter().chain(&st.tracked).map(|(key, k)| (key.clone(), k.clone())).collect();
        for (a, k) in old.accounts.iter().zip(&st.accounts) {
            carried.insert(a.key.clone(), k.clone());
        }
        for k in carried.values_mut() {
            k.disabled = None;
            k.probing = false;
        }
        let new = Pool::build(cfg, old.clock, old.store.clone(), old.redis.clone(), carried);
        old.retired.store(true, Ordering::Relaxed);
        let _ = old.successor.set(new.inner.clone());
        drop(st);
        new
    }

    fn build(
        cfg: &Config,
        clock: Clock,
        store: Option<Arc<Store>>,
        redis: Option<Arc<crate::shared::Redis>>,
        saved: HashMap<String, KeyState>,
    ) -> Pool {
        let providers: Vec<Arc<Provider>> = cfg.providers.iter().map(|p| Arc::new(p.clone())).collect();
        let mut accounts = Vec::new();
        for (pi, p) in cfg.providers.iter().enumerate() {
            for (ai, a) in p.accounts.iter().enumerate() {
                if matches!(a.auth, ProviderAuth::MissingKey { .. }) {
                    continue;
                }
                let mut view = p.clone();
                view.auth = a.auth.clone();
                accounts.push(AccountRef {
                    provider: pi,
                    account: ai,
                    view: Arc::new(view),
                    key: format!("{}|{}|{}", p.name, p.base_url, a.label),
                });
            }
        }
        let mut default_upstream = HashMap::new();
        for d in Dialect::ALL {
            let mut chain: Vec<usize> = cfg.default_upstream.get(&d).copied().into_iter().collect();
            chain.extend(cfg.default_fallbacks.get(&d).into_iter().flatten().copied());
            if !chain.is_empty() {
                default_upstream.insert(d, chain);
            }
        }
        // The configured models of each account's own lane (by any name they answer to).
        let fixed_keys: HashSet<String> = accounts
            .iter()
            .flat_map(|a| {
                let specs = &providers[a.provider].model_specs;
                let names = specs.iter().flat_map(|s| std::iter::once(&s.name).chain(&s.aliases));
                names.map(|n| model_key(&a.key, n)).collect::<Vec<_>>()
            })
            .collect();
        let account_keys: Vec<&str> = accounts.iter().map(|a| a.key.as_str()).collect();
        let loaded = saved.len();
        let (state, dropped) = State::from_saved(&account_keys, &fixed_keys, saved, &cfg.pool, clock.now_ms());
        if let (Some(s), false) = (&store, dropped.is_empty()) {
            tracing::info!("pool store: forgot {} idle or surplus states of models and callers", dropped.len());
            s.delete_many(dropped, loaded);
        }
        let inner = Arc::new(Inner {
            providers,
            accounts,
            routes: cfg.routes.clone(),
            default_upstream,
            settings: cfg.pool.clone(),
            clock,
            state: Mutex::new(state),
            store,
            redis,
            retired: AtomicBool::new(false),
            successor: OnceLock::new(),
        });
        if let Some(r) = &inner.redis {
            let me: std::sync::Weak<Inner> = Arc::downgrade(&inner);
            r.set_resync(me);
        }
        Pool { inner }
    }

    /// The first usable target of `ingress`'s default upstream, without admission (for asking
    /// it for its model list).
    pub fn default_target(&self, ingress: Dialect) -> Option<Target> {
        let inner = &self.inner;
        let chain = inner.default_upstream.get(&ingress)?;
        let acct = chain.iter().find_map(|&p| inner.accounts_of(p).into_iter().next())?;
        let view = inner.accounts[acct].view.clone();
        Some(Target { dialect: view.dialect, provider: view })
    }

    /// The names of the configured routes.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.inner.routes.iter().map(|r| r.name.as_str())
    }

    /// The routes with at least one target whose provider has a usable account (for `/v1/models`).
    pub fn usable_route_names(&self) -> impl Iterator<Item = &str> {
        let providers = &self.inner.providers;
        self.inner
            .routes
            .iter()
            .filter(|r| r.targets.iter().any(|t| providers.get(t.provider).is_some_and(|p| p.is_usable())))
            .map(|r| r.name.as_str())
    }

    /// The providers this pool routes to (for `/v1/models`).
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.inner.providers
    }

    /// The pool's clock: `now_ms()` is what `classify` needs to turn reset dates into durations.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Waits until every change so far is saved (tests, shutdown).
    pub fn flush(&self) {
        if let Some(s) = &self.inner.store {
            s.flush();
        }
    }

    /// The Redis the pool shares its state through (`[state] redis_url`), if any.
    pub fn shared(&self) -> Option<&Arc<crate::shared::Redis>> {
        self.inner.redis.as_ref()
    }

    /// Where the state is saved, if anywhere.
    pub fn store_path(&self) -> Option<&std::path::Path> {
        self.inner.store.as_ref().map(|s| s.path())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave counters half-written in a way that matters
        // more than refusing all traffic would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn accounts_of(&self, provider: usize) -> Vec<usize> {
        self.accounts.iter().enumerate().filter(|(_, a)| a.provider == provider).map(|(i, _)| i).collect()
    }

    fn key_missing(&self, provider: usize) -> Option<PoolError> {
        let p = &self.providers[provider];
        p.accounts.iter().find_map(|a| match &a.auth {
            ProviderAuth::MissingKey { var, .. } => {
                Some(PoolError::KeyMissing { provider: p.name.clone(), var: var.clone() })
            }
            _ => None,
        })
    }

    /// Route name, then `provider/model`, then a model some provider lists, then the default
    /// upstream of the ingress dialect (model left as the client sent it).
    fn resolve(&self, ingress: Dialect, model: Option<&str>) -> Result<Routing, PoolError> {
        if let Some(m) = model {
            if let Some(r) = self.routes.iter().find(|r| r.name == m) {
                let targets = r
                    .targets
                    .iter()
                    .map(|t| Resolved {
                        provider: t.provider,
                        send_model: (t.model != m).then(|| t.model.clone()),
                        model: t.model.clone(),
                    })
                    .collect();
                return Ok(Routing {
                    label: r.name.clone(),
                    strategy: r.strategy,
                    max_wait_ms: r.max_wait_ms,
                    targets,
                });
            }
            if let Ok(t) = crate::config::resolve_target(m, &self.providers) {
                let target = Resolved { provider: t.provider, send_model: Some(t.model.clone()), model: t.model };
                return Ok(Routing {
                    label: m.to_string(),
                    strategy: Strategy::Fallback,
                    max_wait_ms: 0,
                    targets: vec![target],
                });
            }
            let mut listed: Vec<(usize, String)> = self
                .providers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.model_spec(m).map(|s| (i, s.name.clone())))
                .collect();
            // Same dialect first: no translation needed.
            listed.sort_by_key(|(i, _)| self.providers[*i].dialect != ingress);
            if !listed.is_empty() {
                let targets = listed
                    .into_iter()
                    .map(|(provider, name)| Resolved {
                        provider,
                        send_model: (name != m).then(|| name.clone()),
                        model: name,
                    })
                    .collect();
                return Ok(Routing { label: m.to_string(), strategy: Strategy::Fallback, max_wait_ms: 0, targets });
            }
        }
        let chain = self
            .default_upstream
            .get(&ingress)
            .ok_or_else(|| PoolError::NoRoute { ingress, model: model.map(str::to_string) })?;
        let model_name = model.unwrap_or("").to_string();
        let targets =
            chain.iter().map(|&provider| Resolved { provider, send_model: None, model: model_name.clone() }).collect();
        Ok(Routing {
            label: format!("default {}", ingress.name()),
            strategy: Strategy::Fallback,
            max_wait_ms: 0,
            targets,
        })
    }

    /// The pool a reload replaced this one with, if any.
    fn successor(&self) -> Option<Arc<Inner>> {
        self.successor.get().cloned()
    }

    /// Saves a key's state off the hot path.
    fn persist(&self, slot: &Slot, state: &KeyState) {
        if let Some(s) = self.store.as_ref().filter(|_| !self.retired.load(Ordering::Relaxed)) {
            s.put(self.slot_key(slot), state.clone());
        }
    }

    /// Removes states `tidy` dropped from the store.
    fn forget(&self, keys: Vec<String>) {
        if let Some(s) = self.store.as_ref().filter(|_| !self.retired.load(Ordering::Relaxed)) {
            for k in keys {
                s.delete(k);
            }
        }
    }

    /// The lane of account `acct` for a request from `caller`: the caller's own on an account
    /// that forwards callers' keys, else the account's.
    fn lane(&self, acct: usize, caller: Option<Caller>) -> Lane {
        let forwards = matches!(self.accounts[acct].view.auth, ProviderAuth::Client);
        Lane { acct, caller: caller.filter(|_| forwards) }
    }

    fn lane_key(&self, lane: Lane) -> String {
        let key = &self.accounts[lane.acct].key;
        match lane.caller {
            None => key.clone(),
            Some(c) => caller_key(key, c),
        }
    }

    /// Where the lane's own state (the account's, or the caller's on it) lives.
    fn account_slot(&self, lane: Lane) -> Slot {
        match lane.caller {
            None => Slot::Account(lane.acct),
            Some(_) => Slot::Tracked(self.lane_key(lane)),
        }
    }

    /// Where the state of `model` on the lane lives: fixed for a configured model on the
    /// account's own lane, else tracked.
    fn model_slot(&self, lane: Lane, model: &str) -> Slot {
        let key = model_key(&self.lane_key(lane), model);
        let configured = self.providers[self.accounts[lane.acct].provider].model_spec(model).is_some();
        if lane.caller.is_none() && configured {
            Slot::Fixed(key)
        } else {
            Slot::Tracked(key)
        }
    }

    fn slot_key<'a>(&'a self, slot: &'a Slot) -> &'a str {
        match slot {
            Slot::Account(i) => &self.accounts[*i].key,
            Slot::Fixed(k) | Slot::Tracked(k) => k,
        }
    }
}

/// The store key of a model's state under a lane's key.
fn model_key(lane_key: &str, model: &str) -> String {
    format!("{lane_key}|m|{model}")
}

/// The store key of a caller's lane on an account.
fn caller_key(account_key: &str, caller: Caller) -> String {
    format!("{account_key}|c|{caller}")
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_budget;
#[cfg(test)]
mod tests_quota;
#[cfg(test)]
mod tests_routing;
