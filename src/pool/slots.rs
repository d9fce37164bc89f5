//! Where each key state lives, and how many there may be. The config fixes some: each account's
//! own state and its configured models; those stay. The rest come from traffic: models only
//! clients name (a passthrough provider forwards any name) and, on `auth = "client"` accounts,
//! each caller's own lane. Those are bounded: at most `[pool] max_tracked` (the least recently
//! used go first, a cooldown in force last) and dropped once unused for `forget_idle_hours`,
//! in memory and in the store alike, so invented names or keys cannot grow the pool without end.

use std::collections::{HashMap, HashSet};

use crate::config::PoolSettings;

use super::caller::Caller;
use super::state::KeyState;

/// Whose state an attempt counts against: an account, and on an `auth = "client"` account the
/// caller (a hash of its credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Lane {
    pub acct: usize,
    pub caller: Option<Caller>,
}

/// One key state's place: an account's own, one the config fixes (by store key), or one that
/// traffic made (by store key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    Account(usize),
    Fixed(String),
    Tracked(String),
}

/// How often idle tracked states are looked for (on the next plan after this long).
const SWEEP_EVERY_MS: i64 = 60_000;

pub(crate) struct State {
    pub accounts: Vec<KeyState>,
    /// Configured models of each account's own lane, by store key.
    pub fixed: HashMap<String, KeyState>,
    /// Everything else, by store key: bounded (see the module doc).
    pub tracked: HashMap<String, KeyState>,
    pub round_robin: HashMap<String, usize>,
    last_sweep_ms: i64,
}

impl State {
    /// The state from what was saved: `account_keys` in order; keys in `fixed_keys` fixed; the
    /// rest tracked, bounded now. Returns the keys it dropped (to delete from the store).
    pub fn from_saved(
        account_keys: &[&str],
        fixed_keys: &HashSet<String>,
        mut saved: HashMap<String, KeyState>,
        settings: &PoolSettings,
        now_ms: i64,
    ) -> (State, Vec<String>) {
        let accounts = account_keys.iter().map(|k| saved.remove(*k).unwrap_or_default()).collect();
        let (fixed, tracked) = saved.into_iter().partition(|(k, _)| fixed_keys.contains(k));
        let mut st = State { accounts, fixed, tracked, round_robin: HashMap::new(), last_sweep_ms: now_ms };
        let mut dropped = st.forget_idle(settings, now_ms);
        dropped.extend(st.evict(settings.max_tracked, now_ms));
        (st, dropped)
    }

    /// The state in `slot`, made if new; marked used at `now_ms`.
    pub fn get(&mut self, slot: &Slot, now_ms: i64) -> &mut KeyState {
        let k = match slot {
            Slot::Account(i) => &mut self.accounts[*i],
            Slot::Fixed(key) => self.fixed.entry(key.clone()).or_default(),
            Slot::Tracked(key) => self.tracked.entry(key.clone()).or_default(),
        };
        k.last_used_ms = k.last_used_ms.max(now_ms);
        k
    }

    /// Keeps the tracked states bounded: over the cap, the least recently used go (down to 90%
    /// of it, so this runs once per many new states); every minute, those idle too long go.
    /// Returns the keys dropped.
    pub fn tidy(&mut self, settings: &PoolSettings, now_ms: i64) -> Vec<String> {
        let mut dropped = Vec::new();
        if now_ms - self.last_sweep_ms >= SWEEP_EVERY_MS {
            self.last_sweep_ms = now_ms;
            dropped = self.forget_idle(settings, now_ms);
        }
        if self.tracked.len() > settings.max_tracked {
            dropped.extend(self.evict(settings.max_tracked * 9 / 10, now_ms));
        }
        dropped
    }

    fn forget_idle(&mut self, settings: &PoolSettings, now_ms: i64) -> Vec<String> {
        let before = now_ms.saturating_sub(settings.forget_idle.as_millis() as i64);
        let idle: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, k)| k.last_used_ms < before && !in_use(k, now_ms))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &idle {
            self.tracked.remove(key);
        }
        idle
    }

    /// Drops tracked states until at most `keep` remain: never one with a request in flight or
    /// a probe out; those with a cooldown in force last, else the least recently used first.
    fn evict(&mut self, keep: usize, now_ms: i64) -> Vec<String> {
        if self.tracked.len() <= keep {
            return Vec::new();
        }
        let mut order: Vec<(bool, i64, &String)> = self
            .tracked
            .iter()
            .filter(|(_, k)| k.counters.concurrent == 0 && !k.probing)
            .map(|(key, k)| (cooling(k, now_ms), k.last_used_ms, key))
            .collect();
        order.sort_unstable();
        let n = self.tracked.len() - keep;
        let gone: Vec<String> = order.into_iter().take(n).map(|(_, _, key)| key.clone()).collect();
        for key in &gone {
            self.tracked.remove(key);
        }
        gone
    }
}

fn cooling(k: &KeyState, now_ms: i64) -> bool {
    k.cooldown.as_ref().is_some_and(|c| c.until_ms > now_ms)
}

/// A state that still decides something: a request in flight, a probe out, a cooldown in force.
fn in_use(k: &KeyState, now_ms: i64) -> bool {
    k.counters.concurrent > 0 || k.probing || cooling(k, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::state::{Cooldown, CooldownKind};
    use std::time::Duration;

    fn settings(max: usize) -> PoolSettings {
        PoolSettings { max_tracked: max, forget_idle: Duration::from_secs(3600), ..PoolSettings::default() }
    }

    fn used_at(ms: i64) -> KeyState {
        KeyState { last_used_ms: ms, ..KeyState::default() }
    }

    #[test]
    fn over_the_cap_the_least_recently_used_go_but_not_those_in_use() {
        let s = settings(10);
        let mut st = State::from_saved(&[], &HashSet::new(), HashMap::new(), &s, 0).0;
        for i in 0..10 {
            st.get(&Slot::Tracked(format!("m{i}")), 1000 + i).counters.concurrent = u32::from(i == 0);
        }
        st.get(&Slot::Tracked("m1".into()), 5000).cooldown =
            Some(Cooldown { kind: CooldownKind::RateLimited, until_ms: 99_000, reason: String::new() });
        assert!(st.tidy(&s, 6000).is_empty(), "at the cap, nothing goes");
        st.get(&Slot::Tracked("new".into()), 6000);
        let mut gone = st.tidy(&s, 6000);
        gone.sort();
        // 11 > 10: down to 9. m0 is in flight and m1 cooling: m2 and m3 are the oldest.
        assert_eq!(gone, ["m2", "m3"]);
        assert_eq!(st.tracked.len(), 9);
        assert!(st.tracked.contains_key("m0") && st.tracked.contains_key("m1"));
    }

    #[test]
    fn idle_states_are_forgotten_and_fixed_ones_never() {
        let s = settings(100);
        let fixed: HashSet<String> = ["acct|m|listed".to_string()].into();
        let saved: HashMap<String, KeyState> = [
            ("acct".to_string(), used_at(0)),
            ("acct|m|listed".to_string(), used_at(0)),
            ("acct|m|invented".to_string(), used_at(0)),
            ("acct|m|recent".to_string(), used_at(7_000_000)),
        ]
        .into();
        let (mut st, dropped) = State::from_saved(&["acct"], &fixed, saved, &s, 7_200_000);
        assert_eq!(dropped, ["acct|m|invented"], "idle for two hours, one allowed");
        assert_eq!(st.fixed.len(), 1);
        assert_eq!(st.tracked.len(), 1);
        // A minute later nothing is due; an hour later the recent one is idle too.
        assert!(st.tidy(&s, 7_260_000).is_empty());
        assert_eq!(st.tidy(&s, 10_700_000), ["acct|m|recent"]);
        assert_eq!(st.fixed.len(), 1);
        assert_eq!(st.accounts.len(), 1);
    }

    #[test]
    fn a_restart_keeps_only_the_most_recent_up_to_the_cap() {
        let s = settings(3);
        let saved: HashMap<String, KeyState> = (0..8).map(|i| (format!("k{i}"), used_at(1000 + i))).collect();
        let (st, dropped) = State::from_saved(&[], &HashSet::new(), saved, &s, 2000);
        assert_eq!(dropped.len(), 5);
        let mut kept: Vec<&String> = st.tracked.keys().collect();
        kept.sort();
        assert_eq!(kept, ["k5", "k6", "k7"]);
    }
}
