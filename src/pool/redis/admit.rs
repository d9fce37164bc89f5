//! Admission through Redis: one script per candidate tried.

use super::super::admission::{Attempt, Candidate, Plan};
use super::super::window::{Block, Est};
use super::Admission;

impl Plan {
    /// The next candidate that can take the request, with its quota reserved: when the pool
    /// shares its state (`[state] redis_url`) through one Redis script per candidate tried, else
    /// (and while Redis is away) on this instance's counters as `next_attempt` does.
    pub async fn admit_next(&mut self) -> Option<Attempt> {
        while let Some((c, est, tokens)) = self.next_candidate() {
            if let Some(a) = self.admit_candidate(c, est, tokens).await {
                return Some(a);
            }
        }
        None
    }

    /// Admits candidate `c` for `est` input tokens (reserving `tokens`): through Redis when the
    /// pool shares its state and Redis answers, else on this instance's counters. `None`, with
    /// the reason noted, when it cannot take the request now.
    pub(in crate::pool) async fn admit_candidate(&mut self, c: Candidate, est: u64, tokens: Est) -> Option<Attempt> {
        let inner = self.pool().clone();
        let Some(redis) = inner.redis.clone().filter(|r| r.is_up()) else { return self.admit_here(c, est, tokens) };
        let now = inner.clock.now_ms();
        // A refused key is this instance's finding (until a reload); Redis does not know it.
        let disabled = inner.lock().get(&c.acct_slot, now).disabled.clone();
        if let Some(reason) = disabled {
            self.refused(&c, Block { reason, free_at_ms: None });
            return None;
        }
        let zone = &inner.providers[inner.accounts[c.acct].provider].day_zone;
        let (day, next_day) = (zone.day_index(now), zone.next_reset_ms(now));
        let limits = inner.limits(c.acct, &c.target.model);
        let slots = (&c.acct_slot, &c.model_slot);
        let mut answer = inner.admit_shared(&redis, slots, limits, tokens, day, next_day).await;
        if let Admission::NewEpoch(epoch) = &answer {
            // Redis lost its data: give it this instance's counts first, then ask again.
            answer = match redis.resync(epoch).await {
                Ok(()) => inner.admit_shared(&redis, slots, limits, tokens, day, next_day).await,
                Err(e) => {
                    redis.down(&e);
                    Admission::Unreachable
                }
            };
        }
        match answer {
            Admission::Reserved { ticket, probe } => {
                let now = inner.clock.now_ms();
                let mut st = inner.lock();
                Some(self.start(&mut st, c, est, tokens, probe, Some(ticket), now))
            }
            Admission::Refused { reason, free_at_ms } => {
                self.refused(&c, Block { reason, free_at_ms });
                None
            }
            Admission::NewEpoch(_) | Admission::Unreachable => self.admit_here(c, est, tokens),
        }
    }
}
