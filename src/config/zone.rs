//! The zone whose local midnight ends a provider's daily quota window (`day_reset_tz`): any IANA
//! zone, from the system's time-zone database through `jiff` (embedded on platforms without
//! one). Providers reset daily quotas at midnight UTC or midnight Pacific (Gemini's free tier).

use jiff::tz::TimeZone;
use jiff::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// A time zone in which a daily window resets at local midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayZone {
    /// The name as the database spells it (the config may write it in any case).
    name: String,
    tz: TimeZone,
}

impl Default for DayZone {
    fn default() -> Self {
        DayZone::utc()
    }
}

impl DayZone {
    pub fn utc() -> DayZone {
        DayZone { name: "UTC".into(), tz: TimeZone::UTC }
    }

    /// A zone by its IANA name (`America/Los_Angeles`, `utc`), if the database has it.
    pub fn parse(name: &str) -> Option<DayZone> {
        let tz = TimeZone::get(name.trim()).ok()?;
        let name = tz.iana_name().unwrap_or(name.trim()).to_string();
        Some(DayZone { name, tz })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's offset from UTC at `unix_ms`, in milliseconds.
    pub fn offset_ms(&self, unix_ms: i64) -> i64 {
        let offset = |ts: Timestamp| i64::from(self.tz.to_offset(ts).seconds()) * 1000;
        timestamp(unix_ms).map_or(0, offset)
    }

    /// Days since 1970-01-01 in local time: the identity of the daily window `unix_ms` falls in.
    pub fn day_index(&self, unix_ms: i64) -> i64 {
        (unix_ms + self.offset_ms(unix_ms)).div_euclid(DAY_MS)
    }

    /// The instant (unix ms) the daily window containing `unix_ms` ends: the next local midnight
    /// (or the day's first instant where a DST change skips midnight).
    pub fn next_reset_ms(&self, unix_ms: i64) -> i64 {
        let next_midnight = timestamp(unix_ms)
            .and_then(|ts| ts.to_zoned(self.tz.clone()).date().tomorrow().ok())
            .and_then(|day| day.to_zoned(self.tz.clone()).ok());
        match next_midnight {
            Some(z) => z.timestamp().as_millisecond(),
            // Outside jiff's range (years beyond ±9999): a whole UTC day after this one.
            None => (unix_ms.div_euclid(DAY_MS) + 1) * DAY_MS,
        }
    }
}

fn timestamp(unix_ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(unix_ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn utc(y: i16, m: i8, d: i8, h: i8, mi: i8) -> i64 {
        jiff::civil::datetime(y, m, d, h, mi, 0, 0).to_zoned(TimeZone::UTC).unwrap().timestamp().as_millisecond()
    }

    #[test]
    fn pacific_offsets_follow_us_dst() {
        let la = DayZone::parse("America/Los_Angeles").unwrap();
        // 2025: DST from Sun 9 March 10:00 UTC to Sun 2 November 09:00 UTC.
        assert_eq!(la.offset_ms(utc(2025, 1, 15, 12, 0)), -8 * HOUR_MS);
        assert_eq!(la.offset_ms(utc(2025, 3, 9, 9, 59)), -8 * HOUR_MS);
        assert_eq!(la.offset_ms(utc(2025, 3, 9, 10, 0)), -7 * HOUR_MS);
        assert_eq!(la.offset_ms(utc(2025, 7, 1, 0, 0)), -7 * HOUR_MS);
        assert_eq!(la.offset_ms(utc(2025, 11, 2, 8, 59)), -7 * HOUR_MS);
        assert_eq!(la.offset_ms(utc(2025, 11, 2, 9, 0)), -8 * HOUR_MS);
    }

    #[test]
    fn pacific_day_resets_at_local_midnight() {
        let la = DayZone::parse("america/los_angeles").unwrap();
        assert_eq!(la.name(), "America/Los_Angeles");
        // Summer: midnight PDT is 07:00 UTC; winter: midnight PST is 08:00 UTC.
        assert_eq!(la.next_reset_ms(utc(2025, 7, 1, 12, 0)), utc(2025, 7, 2, 7, 0));
        assert_eq!(la.next_reset_ms(utc(2025, 7, 2, 6, 59)), utc(2025, 7, 2, 7, 0));
        assert_eq!(la.next_reset_ms(utc(2025, 1, 10, 7, 30)), utc(2025, 1, 10, 8, 0));
        assert_ne!(la.day_index(utc(2025, 7, 2, 6, 59)), la.day_index(utc(2025, 7, 2, 7, 0)));
        // The night DST starts: Saturday 8 March 2025 00:00 PST -> Sunday 00:00 PST (08:00 UTC).
        assert_eq!(la.next_reset_ms(utc(2025, 3, 8, 12, 0)), utc(2025, 3, 9, 8, 0));
        // And the day after, midnight is PDT.
        assert_eq!(la.next_reset_ms(utc(2025, 3, 9, 12, 0)), utc(2025, 3, 10, 7, 0));
        assert_eq!(DayZone::utc().next_reset_ms(utc(2025, 7, 1, 23, 59)), utc(2025, 7, 2, 0, 0));
    }

    #[test]
    fn any_iana_zone_and_the_eu_rule() {
        let paris = DayZone::parse("Europe/Paris").unwrap();
        assert_eq!(paris.offset_ms(utc(2025, 3, 30, 0, 59)), HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2025, 3, 30, 1, 0)), 2 * HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2025, 10, 26, 1, 0)), HOUR_MS);
        let kolkata = DayZone::parse("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.next_reset_ms(utc(2025, 5, 5, 12, 0)), utc(2025, 5, 5, 18, 30));
        // Zones the old hand table did not have: a 45-minute offset, and a southern-hemisphere DST.
        let kathmandu = DayZone::parse("Asia/Kathmandu").unwrap();
        assert_eq!(kathmandu.next_reset_ms(utc(2025, 5, 5, 12, 0)), utc(2025, 5, 5, 18, 15));
        let auckland = DayZone::parse("Pacific/Auckland").unwrap();
        assert_eq!(auckland.offset_ms(utc(2025, 1, 15, 0, 0)), 13 * HOUR_MS);
        assert_eq!(auckland.offset_ms(utc(2025, 7, 15, 0, 0)), 12 * HOUR_MS);
        assert!(DayZone::parse("Mars/Olympus").is_none());
    }

    #[test]
    fn a_midnight_skipped_by_dst_resets_at_the_days_first_instant() {
        // Santiago moved its clocks from 00:00 to 01:00 on Sunday 7 September 2025 (UTC-4 -> UTC-3).
        let santiago = DayZone::parse("America/Santiago").unwrap();
        assert_eq!(santiago.next_reset_ms(utc(2025, 9, 6, 12, 0)), utc(2025, 9, 7, 4, 0));
    }
}
