//! Admission without Redis: each instance admits on its own counters, within a safe share of
//! each limit. The share is 1/N of what the key had left when this instance last heard from
//! Redis (N: the instances seen in the last minute), on top of what this instance itself had used
//! by then. If every instance holds to its share, the sum stays within the limit:
//! `used_by_all_then + N × (limit − used_by_all_then) / N`. A last word older than the window it
//! speaks of (a minute for RPM/TPM, the day for RPD/TPD) no longer binds: then the share is 1/N of
//! the limit.

use crate::config::Limits;

use super::super::window::Counters;

/// What Redis said about one key at this instance's last admission on it, next to this
/// instance's own counts at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// This instance's clock when it heard.
    pub at_ms: i64,
    pub day: i64,
    /// Requests and tokens of the rolling minute, of the day, and requests in flight, over all
    /// instances.
    pub minute: (u64, u64),
    pub daily: (u64, u64),
    pub inflight: u64,
    /// The same counts of this instance alone.
    pub own_minute: (u64, u64),
    pub own_daily: (u64, u64),
    pub own_inflight: u64,
}

impl Seen {
    /// `all` counts from Redis, with this instance's `own` counters now.
    pub fn new(at_ms: i64, day: i64, all: [u64; 5], own: &Counters) -> Seen {
        let own_minute = own.minute_use(at_ms);
        let own_daily = if own.day == day { (own.day_requests, own.day_tokens) } else { (0, 0) };
        Seen {
            at_ms,
            day,
            minute: (all[0], all[1]),
            daily: (all[2], all[3]),
            inflight: all[4],
            own_minute,
            own_daily,
            own_inflight: u64::from(own.concurrent),
        }
    }
}

/// A rolling minute's last word binds for the whole minute after it (no bucket it counted has
/// left the window by then; later, those buckets free no more than what they counted).
const MINUTE_MS: i64 = 61_000;

/// The limits this instance admits under while it cannot reach Redis: `limits` (the effective
/// ones) shared with `instances` others, from what `seen` said (see the module doc).
pub fn share(limits: &Limits, seen: Option<&Seen>, instances: u64, now_ms: i64, day: i64) -> Limits {
    let n = instances.max(1);
    let part = |limit: u64, all: u64, own: u64| own + limit.saturating_sub(all) / n;
    let minute = seen.filter(|s| now_ms - s.at_ms < MINUTE_MS);
    let daily = seen.filter(|s| s.day == day);
    Limits {
        rpm: limits.rpm.map(|l| minute.map_or(l / n, |s| part(l, s.minute.0, s.own_minute.0))),
        tpm: limits.tpm.map(|l| minute.map_or(l / n, |s| part(l, s.minute.1, s.own_minute.1))),
        rpd: limits.rpd.map(|l| daily.map_or(l / n, |s| part(l, s.daily.0, s.own_daily.0))),
        tpd: limits.tpd.map(|l| daily.map_or(l / n, |s| part(l, s.daily.1, s.own_daily.1))),
        concurrent: limits.concurrent.map(|l| {
            let l = u64::from(l);
            let v = seen.map_or(l / n, |s| part(l, s.inflight, s.own_inflight));
            u32::try_from(v).unwrap_or(u32::MAX)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { rpm: Some(60), tpm: Some(6000), rpd: Some(1000), tpd: None, concurrent: Some(4) }
    }

    #[test]
    fn without_a_last_word_each_instance_gets_one_nth() {
        let l = share(&limits(), None, 2, 0, 0);
        assert_eq!((l.rpm, l.tpm, l.rpd, l.tpd, l.concurrent), (Some(30), Some(3000), Some(500), None, Some(2)));
        assert_eq!(share(&limits(), None, 0, 0, 0), limits(), "no instance seen counts as this one alone");
    }

    #[test]
    fn a_full_window_stays_full_until_its_last_word_ages() {
        // Two instances; when Redis went away the minute held 60 requests, 31 of them ours.
        let seen = Seen {
            at_ms: 100_000,
            day: 7,
            minute: (60, 3000),
            daily: (900, 0),
            inflight: 4,
            own_minute: (31, 1500),
            own_daily: (450, 0),
            own_inflight: 2,
        };
        let l = share(&limits(), Some(&seen), 2, 130_000, 7);
        // Nothing left to share: only what we had already counted, so nothing new fits.
        assert_eq!(l.rpm, Some(31));
        assert_eq!(l.tpm, Some(1500 + 1500));
        assert_eq!(l.rpd, Some(450 + 50));
        assert_eq!(l.concurrent, Some(2));
        // A minute later the minute's last word says nothing any more; the day's still holds.
        let later = share(&limits(), Some(&seen), 2, 161_000, 7);
        assert_eq!((later.rpm, later.rpd), (Some(30), Some(500)));
        // A new day: one half of the day's limit.
        assert_eq!(share(&limits(), Some(&seen), 2, 161_000, 8).rpd, Some(500));
    }
}
