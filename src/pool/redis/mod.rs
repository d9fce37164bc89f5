//! The pool's state shared through Redis (`[state] redis_url`): quota windows, cooldowns,
//! breakers and learned limits of every account, model and caller's lane live in one hash per key
//! (`tokenfold:<pool>:s:<key>`), reservations in flight in a set beside it (`…:f:<key>`).
//!
//! Admission is one Lua script per candidate (`admit.lua`): it checks both keys' health and every
//! window and reserves on both, in one round trip. The attempt settles with a second script
//! (`settle.lua`) off the request path, queued and pipelined: real usage replaces the estimate,
//! the reservation ends, the outcome updates health. A reservation nobody settles (an instance
//! died) stops counting as in flight after `RESERVATION_TTL`; its tokens stay counted, an upper
//! bound, until its minute and day pass. Keys expire after `[pool] forget_idle_hours` unused (at
//! least a day, so a day's counts survive), and keys that traffic made are bounded by
//! `max_tracked` like in memory.
//!
//! This instance keeps its own counters too (the in-memory state, as without Redis): they are
//! what it admits on while Redis is away (`degraded`), and how it gives a Redis that lost its data
//! its counts back (`Resync`).

mod admit;
mod degraded;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{Script, Value};

use crate::config::Limits;
use crate::shared::{Op, Redis, Resync};

pub use degraded::{share, Seen};

use super::slots::Slot;
use super::state::{Cooldown, CooldownKind, KeyState};
use super::Inner;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("settle.lua")));

/// A reservation's life in Redis when nobody settles it: longer than any request takes.
pub const RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);
/// A key's counts last at least this long unused, so a day's window is never forgotten early.
const MIN_KEY_TTL: Duration = Duration::from_secs(26 * 3600);

/// How an attempt was admitted, so it settles the same way.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    /// The reservation in Redis; `None` when admitted without Redis.
    res: Option<String>,
    /// The Redis generation at admission (see `Redis::generation`).
    generation: u64,
    /// The rolling-minute second and the day it was counted in, and the tokens reserved.
    sec: i64,
    day: i64,
    reserved: u64,
}

impl Ticket {
    /// Whether Redis admitted it (holds a reservation there).
    pub fn is_shared(&self) -> bool {
        self.res.is_some()
    }

    /// An attempt admitted on this instance's counters while Redis was away.
    pub fn local(redis: &Redis, sec: i64, day: i64, reserved: u64) -> Ticket {
        Ticket { res: None, generation: redis.generation(), sec, day, reserved }
    }
}

/// What an attempt's outcome says about health, for the other instances.
#[derive(Debug, Clone, Default)]
pub(crate) enum Event {
    #[default]
    Nothing,
    Succeeded,
    /// A 429 on the account (`on_model` false) or the model.
    RateLimited {
        on_model: bool,
        retry_after: Option<Duration>,
        reason: String,
    },
    QuotaExhausted {
        on_model: bool,
        until_ms: i64,
        reason: String,
        limits: Limits,
    },
    /// 5xx, timeout, reset: counts towards the account's breaker.
    Unavailable {
        reason: String,
    },
}

/// The answer to one admission.
pub(crate) enum Admission {
    Reserved {
        ticket: Ticket,
        probe: bool,
    },
    Refused {
        reason: String,
        free_at_ms: Option<i64>,
    },
    /// Redis lost its data since this instance last heard (its epoch is new).
    NewEpoch(String),
    /// Redis cannot be reached: admit on this instance alone.
    Unreachable,
}

/// The fields a key's state comes back as (see `state()` in admit.lua).
const STATE_FIELDS: usize = 13;

impl Inner {
    fn hash_key(&self, redis: &Redis, slot: &Slot) -> String {
        redis.key(&format!("s:{}", self.slot_key(slot)))
    }

    fn flight_key(&self, redis: &Redis, slot: &Slot) -> String {
        redis.key(&format!("f:{}", self.slot_key(slot)))
    }

    fn key_ttl_ms(&self) -> u64 {
        self.settings.forget_idle.max(MIN_KEY_TTL).as_millis() as u64
    }

    /// Runs the admission script for an account slot and a model slot with their configured
    /// limits. On an answer, mirrors what Redis said into this instance's state (`seen`,
    /// cooldowns, learned limits) under the pool's lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit_shared(
        &self,
        redis: &Redis,
        slots: (&Slot, &Slot),
        limits: (Limits, Limits),
        est: super::window::Est,
        day: i64,
        next_day_ms: i64,
    ) -> Admission {
        let res = redis.new_id();
        let mut inv = ADMIT.prepare_invoke();
        for slot in [slots.0, slots.1] {
            inv.key(self.hash_key(redis, slot)).key(self.flight_key(redis, slot));
        }
        inv.key(redis.key("instances")).key(redis.key("epoch")).key(redis.key("tracked"));
        inv.arg(redis.epoch()).arg(redis.new_id()).arg(redis.instance()).arg(&res);
        inv.arg(RESERVATION_TTL.as_millis() as u64).arg(self.key_ttl_ms()).arg(est.hard).arg(est.reserve);
        inv.arg(day).arg(next_day_ms).arg(self.settings.max_tracked);
        for (slot, l) in [(slots.0, limits.0), (slots.1, limits.1)] {
            let n = |v: Option<u64>| v.map_or(-1, |v| v as i64);
            inv.arg(n(l.rpm)).arg(n(l.rpd)).arg(n(l.tpm)).arg(n(l.tpd)).arg(n(l.concurrent.map(u64::from)));
            inv.arg(u8::from(matches!(slot, Slot::Tracked(_))));
        }
        let reply = match redis.invoke(&inv).await {
            Ok(Value::Array(v)) => v,
            Ok(other) => {
                tracing::warn!("shared state: unexpected admission answer {other:?}");
                return Admission::Unreachable;
            }
            Err(e) => {
                if !crate::shared::unreachable(&e) {
                    tracing::warn!("shared state: admission script failed: {e}");
                }
                return Admission::Unreachable;
            }
        };
        let head = |i: usize| reply.get(i).map(int).unwrap_or(-1);
        match head(0) {
            2 => return Admission::NewEpoch(reply.get(1).map(text).unwrap_or_default()),
            1 | 0 => {}
            _ => return Admission::Unreachable,
        }
        redis.set_instances(head(2).max(1) as u64);
        // Both answers carry the two keys' states from the sixth value on.
        let states_at = 5;
        let acct_state = reply.get(states_at..states_at + STATE_FIELDS).unwrap_or(&[]);
        let model_state = reply.get(states_at + STATE_FIELDS..states_at + 2 * STATE_FIELDS).unwrap_or(&[]);
        {
            let now = self.clock.now_ms();
            let mut st = self.lock();
            mirror(st.get(slots.0, now), acct_state, now, day);
            mirror(st.get(slots.1, now), model_state, now, day);
        }
        if head(0) == 0 {
            let free = head(4);
            return Admission::Refused {
                reason: reply.get(3).map(text).unwrap_or_default(),
                free_at_ms: (free >= 0).then_some(free),
            };
        }
        let sec = head(1).div_euclid(1000);
        let ticket = Ticket { res: Some(res), generation: redis.generation(), sec, day, reserved: est.reserve };
        Admission::Reserved { ticket, probe: head(3) == 1 }
    }

    /// Queues the settling of an attempt: `tokens` used (`keep_request` false: never sent), and
    /// what its outcome says about health.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle_shared(
        &self,
        redis: &Redis,
        slots: (&Slot, &Slot),
        ticket: &Ticket,
        tokens: u64,
        keep_request: bool,
        probe: bool,
        event: Event,
    ) {
        // Counted in a full resync's counts already: only the difference from what it reserved.
        let covered = ticket.generation < redis.generation();
        let (res, dreq, dtok) = match (&ticket.res, covered) {
            (_, true) | (Some(_), false) => {
                let res = if covered { String::new() } else { ticket.res.clone().unwrap_or_default() };
                (res, if keep_request { 0 } else { -1 }, tokens as i64 - ticket.reserved as i64)
            }
            // Admitted without Redis: added as it was used.
            (None, false) if keep_request => (String::new(), 1, tokens as i64),
            (None, false) => (String::new(), 0, 0),
        };
        if ticket.res.is_none() && dreq == 0 && dtok == 0 && matches!(event, Event::Nothing) {
            return;
        }
        let s = &self.settings;
        let ms = |d: Duration| d.as_millis() as i64;
        let (name, on_model, reason, retry, until, limits) = match event {
            Event::Nothing => ("", false, String::new(), -1, 0, Limits::default()),
            Event::Succeeded => ("ok", false, String::new(), -1, 0, Limits::default()),
            Event::RateLimited { on_model, retry_after, reason } => {
                ("rate", on_model, reason, retry_after.map_or(-1, ms), 0, Limits::default())
            }
            Event::QuotaExhausted { on_model, until_ms, reason, limits } => {
                ("quota", on_model, reason, -1, until_ms, limits)
            }
            Event::Unavailable { reason } => ("down", false, reason, -1, 0, Limits::default()),
        };
        let n = |v: Option<u64>| v.map_or(-1, |v| v as i64);
        let args = vec![
            res,
            ticket.sec.to_string(),
            ticket.day.to_string(),
            dreq.to_string(),
            dtok.to_string(),
            self.key_ttl_ms().to_string(),
            u8::from(probe && !covered).to_string(),
            name.to_string(),
            if on_model { "2" } else { "1" }.to_string(),
            reason,
            retry.to_string(),
            until.to_string(),
            ms(s.backoff_base).to_string(),
            ms(s.backoff_max).to_string(),
            ms(s.short_cooldown).to_string(),
            s.breaker_failures.to_string(),
            ms(s.breaker_open).to_string(),
            n(limits.rpd).to_string(),
            n(limits.tpd).to_string(),
        ];
        let keys = vec![
            self.hash_key(redis, slots.0),
            self.flight_key(redis, slots.0),
            self.hash_key(redis, slots.1),
            self.flight_key(redis, slots.1),
        ];
        redis.push(Op::Script { script: &SETTLE, keys, args });
    }

    /// Queues what a provider's headers said (its windows, the limits it reported) for `slots`.
    pub(super) fn observed_shared(&self, redis: &Redis, slots: &[&Slot], k: &[&KeyState]) {
        let mut cmds = Vec::new();
        for (slot, k) in slots.iter().zip(k) {
            let h = self.hash_key(redis, slot);
            let mut fields: Vec<(&str, i64)> = Vec::new();
            for (p, w) in [("pwr", k.counters.provider_requests), ("pwt", k.counters.provider_tokens)] {
                if let Some(w) = w {
                    fields.push((if p == "pwr" { "pwr_r" } else { "pwt_r" }, w.remaining as i64));
                    fields.push((if p == "pwr" { "pwr_at" } else { "pwt_at" }, w.reset_at_ms));
                }
            }
            let l = &k.counters.learned;
            for (f, v) in [("lrpm", l.rpm), ("lrpd", l.rpd), ("ltpm", l.tpm), ("ltpd", l.tpd)] {
                if let Some(v) = v {
                    fields.push((f, v as i64));
                }
            }
            if fields.is_empty() {
                continue;
            }
            let mut c = redis::cmd("HSET");
            c.arg(&h);
            for (f, v) in fields {
                c.arg(f).arg(v);
            }
            cmds.push(c);
            let mut e = redis::cmd("PEXPIRE");
            e.arg(&h).arg(self.key_ttl_ms());
            cmds.push(e);
        }
        if !cmds.is_empty() {
            redis.push(Op::Commands(cmds));
        }
    }
}

impl Resync for Inner {
    /// Under the pool's lock, so every attempt settles either before (its counts are in what is
    /// written here) or after (it settles as a correction of them): a new generation, the queue
    /// dropped, and this instance's counts and cooldowns as writes.
    fn resync(&self, redis: &Redis) -> Vec<Op> {
        let now = self.clock.now_ms();
        let st = self.lock();
        redis.next_generation();
        redis.clear_queue();
        let accounts = self.accounts.iter().zip(&st.accounts).map(|(a, k)| (a.key.as_str(), k));
        let others = st.fixed.iter().chain(&st.tracked).map(|(key, k)| (key.as_str(), k));
        let mut ops = Vec::new();
        for (key, k) in accounts.chain(others) {
            let h = redis.key(&format!("s:{key}"));
            let mut cmds = Vec::new();
            for (sec, req, tok) in k.counters.live_buckets(now) {
                cmds.push(redis::cmd("HINCRBY").arg(&h).arg(format!("r{sec}")).arg(req).to_owned());
                cmds.push(redis::cmd("HINCRBY").arg(&h).arg(format!("t{sec}")).arg(tok).to_owned());
            }
            let c = &k.counters;
            if c.day_requests > 0 || c.day_tokens > 0 {
                cmds.push(redis::cmd("HSET").arg(&h).arg("day").arg(c.day).to_owned());
                cmds.push(redis::cmd("HINCRBY").arg(&h).arg("dr").arg(c.day_requests).to_owned());
                cmds.push(redis::cmd("HINCRBY").arg(&h).arg("dt").arg(c.day_tokens).to_owned());
            }
            if let Some(cd) = k.cooldown.as_ref().filter(|cd| cd.until_ms > now) {
                let kind = cooldown_word(cd.kind);
                cmds.push(
                    redis::cmd("HSET")
                        .arg(&h)
                        .arg("ck")
                        .arg(kind)
                        .arg("cu")
                        .arg(cd.until_ms)
                        .arg("cr")
                        .arg(&cd.reason)
                        .to_owned(),
                );
            }
            if !cmds.is_empty() {
                cmds.push(redis::cmd("PEXPIRE").arg(&h).arg(self.key_ttl_ms()).to_owned());
                ops.push(Op::Commands(cmds));
            }
        }
        ops
    }
}

/// Takes what Redis said about a key into this instance's state: the counts next to its own
/// (for a share while Redis is away), a cooldown, a demotion and limits learned by any instance.
fn mirror(k: &mut KeyState, state: &[Value], now: i64, day: i64) {
    if state.len() < STATE_FIELDS {
        return;
    }
    let i = |n: usize| int(&state[n]);
    let all = [i(0), i(1), i(2), i(3), i(4)].map(|v| v.max(0) as u64);
    k.seen = Some(Seen::new(now, day, all, &k.counters));
    let kind = text(&state[5]);
    if let Some(kind) = cooldown_kind(&kind) {
        let until_ms = i(6);
        if k.cooldown.as_ref().is_none_or(|c| c.until_ms < until_ms) {
            k.cooldown = Some(Cooldown { kind, until_ms, reason: text(&state[7]) });
        }
    }
    k.demoted_until_ms = k.demoted_until_ms.max(i(8));
    let learned = |n: usize| (i(n) >= 0).then(|| i(n) as u64);
    let l = &mut k.counters.learned;
    l.rpm = learned(9).or(l.rpm);
    l.rpd = learned(10).or(l.rpd);
    l.tpm = learned(11).or(l.tpm);
    l.tpd = learned(12).or(l.tpd);
}

/// After this instance reserved locally too: its own counts now include the attempt, as Redis's
/// do, so the share starts from the same place.
pub(super) fn note_own(k: &mut KeyState, now: i64, day: i64) {
    if let Some(s) = k.seen.as_mut() {
        *s = Seen {
            at_ms: now,
            ..Seen::new(now, day, [s.minute.0, s.minute.1, s.daily.0, s.daily.1, s.inflight], &k.counters)
        };
    }
}

fn cooldown_word(k: CooldownKind) -> &'static str {
    match k {
        CooldownKind::RateLimited => "rate-limited",
        CooldownKind::QuotaExhausted => "quota-exhausted",
        CooldownKind::BreakerOpen => "breaker-open",
    }
}

fn cooldown_kind(s: &str) -> Option<CooldownKind> {
    Some(match s {
        "rate-limited" => CooldownKind::RateLimited,
        "quota-exhausted" => CooldownKind::QuotaExhausted,
        "breaker-open" => CooldownKind::BreakerOpen,
        _ => return None,
    })
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(-1),
        _ => -1,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The Redis handle for `[state]`, if the config sets it and it can start.
pub fn start(cfg: &crate::config::Config) -> Option<Arc<Redis>> {
    let s = cfg.state.as_ref()?;
    match Redis::start(s.redis.url.expose(), &s.redis.shown, &s.name) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("{e}; the pool's state is kept on this instance only");
            None
        }
    }
}
