//! Wall-clock math for daily quota windows: a small table of named zones with their UTC offset
//! and daylight-saving rule, instead of a full tz database crate. Providers reset daily quotas at
//! midnight UTC or midnight Pacific (Gemini's free tier); the table covers those and common zones.
//! Rules: US (since 2007: second Sunday of March 02:00 local to first Sunday of November 02:00
//! local) and EU (last Sunday of March 01:00 UTC to last Sunday of October 01:00 UTC).

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dst {
    None,
    Us,
    Eu,
}

/// A time zone in which a daily window resets at local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayZone {
    name: &'static str,
    std_offset_min: i32,
    dst: Dst,
}

const ZONES: &[(&str, i32, Dst)] = &[
    ("UTC", 0, Dst::None),
    ("Etc/UTC", 0, Dst::None),
    ("GMT", 0, Dst::None),
    ("America/Los_Angeles", -480, Dst::Us),
    ("US/Pacific", -480, Dst::Us),
    ("America/Denver", -420, Dst::Us),
    ("America/Phoenix", -420, Dst::None),
    ("America/Chicago", -360, Dst::Us),
    ("America/New_York", -300, Dst::Us),
    ("US/Eastern", -300, Dst::Us),
    ("Europe/London", 0, Dst::Eu),
    ("Europe/Dublin", 0, Dst::Eu),
    ("Europe/Lisbon", 0, Dst::Eu),
    ("Europe/Paris", 60, Dst::Eu),
    ("Europe/Berlin", 60, Dst::Eu),
    ("Europe/Amsterdam", 60, Dst::Eu),
    ("Europe/Madrid", 60, Dst::Eu),
    ("Europe/Rome", 60, Dst::Eu),
    ("Europe/Stockholm", 60, Dst::Eu),
    ("Europe/Helsinki", 120, Dst::Eu),
    ("Asia/Kolkata", 330, Dst::None),
    ("Asia/Shanghai", 480, Dst::None),
    ("Asia/Singapore", 480, Dst::None),
    ("Asia/Tokyo", 540, Dst::None),
    ("Asia/Seoul", 540, Dst::None),
    ("Australia/Brisbane", 600, Dst::None),
];

impl Default for DayZone {
    fn default() -> Self {
        DayZone::UTC
    }
}

impl DayZone {
    pub const UTC: DayZone = DayZone { name: "UTC", std_offset_min: 0, dst: Dst::None };

    /// A zone by its IANA name, if it is in the table.
    pub fn parse(name: &str) -> Option<DayZone> {
        ZONES.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name.trim())).map(|&(name, std_offset_min, dst)| DayZone {
            name,
            std_offset_min,
            dst,
        })
    }

    pub fn known_names() -> impl Iterator<Item = &'static str> {
        ZONES.iter().map(|(n, _, _)| *n)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The zone's offset from UTC at `unix_ms`, in milliseconds.
    pub fn offset_ms(&self, unix_ms: i64) -> i64 {
        let std = self.std_offset_min as i64 * MINUTE_MS;
        let (start, end) = match self.dst {
            Dst::None => return std,
            Dst::Us => {
                let year = civil_from_days((unix_ms + std).div_euclid(DAY_MS)).0;
                let march = nth_sunday(year, 3, 2);
                let november = nth_sunday(year, 11, 1);
                (march * DAY_MS + 2 * HOUR_MS - std, november * DAY_MS + 2 * HOUR_MS - (std + HOUR_MS))
            }
            Dst::Eu => {
                let year = civil_from_days(unix_ms.div_euclid(DAY_MS)).0;
                (last_sunday(year, 3) * DAY_MS + HOUR_MS, last_sunday(year, 10) * DAY_MS + HOUR_MS)
            }
        };
        if unix_ms >= start && unix_ms < end {
            std + HOUR_MS
        } else {
            std
        }
    }

    /// Days since 1970-01-01 in local time: the identity of the daily window `unix_ms` falls in.
    pub fn day_index(&self, unix_ms: i64) -> i64 {
        (unix_ms + self.offset_ms(unix_ms)).div_euclid(DAY_MS)
    }

    /// The instant (unix ms) the daily window containing `unix_ms` ends: the next local midnight.
    pub fn next_reset_ms(&self, unix_ms: i64) -> i64 {
        let local_midnight = (self.day_index(unix_ms) + 1) * DAY_MS;
        // The offset at midnight may differ from the one now (DST changes at 01:00-02:00 local).
        let guess = local_midnight - self.offset_ms(unix_ms);
        local_midnight - self.offset_ms(guess)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday(first)) % 7 + 7 * (n - 1)
}

fn last_sunday(year: i64, month: u32) -> i64 {
    let next = if month == 12 { days_from_civil(year + 1, 1, 1) } else { days_from_civil(year, month + 1, 1) };
    let last = next - 1;
    last - weekday(last)
}

/// Parses an RFC 3339 timestamp (`2025-01-01T12:00:00Z`, fractions and `+hh:mm` offsets allowed)
/// into unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let mut ms = r[..digits.min(3)].parse::<i64>().unwrap_or(0);
        for _ in digits.min(3)..3 {
            ms *= 10;
        }
        frac_ms = ms;
        rest = &r[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 60 + rest.get(4..6)?.parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * DAY_MS + h * HOUR_MS + mi * MINUTE_MS + sec * 1000 + frac_ms - offset_min * MINUTE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS + mi * MINUTE_MS
    }

    #[test]
    fn civil_round_trip() {
        for z in [-800_000, -1, 0, 1, 19_000, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
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
        // Summer: midnight PDT is 07:00 UTC; winter: midnight PST is 08:00 UTC.
        assert_eq!(la.next_reset_ms(utc(2025, 7, 1, 12, 0)), utc(2025, 7, 2, 7, 0));
        assert_eq!(la.next_reset_ms(utc(2025, 7, 2, 6, 59)), utc(2025, 7, 2, 7, 0));
        assert_eq!(la.next_reset_ms(utc(2025, 1, 10, 7, 30)), utc(2025, 1, 10, 8, 0));
        assert_ne!(la.day_index(utc(2025, 7, 2, 6, 59)), la.day_index(utc(2025, 7, 2, 7, 0)));
        // The night DST starts: Saturday 8 March 2025 00:00 PST -> Sunday 00:00 PST (08:00 UTC).
        assert_eq!(la.next_reset_ms(utc(2025, 3, 8, 12, 0)), utc(2025, 3, 9, 8, 0));
        // And the day after, midnight is PDT.
        assert_eq!(la.next_reset_ms(utc(2025, 3, 9, 12, 0)), utc(2025, 3, 10, 7, 0));
        assert_eq!(DayZone::UTC.next_reset_ms(utc(2025, 7, 1, 23, 59)), utc(2025, 7, 2, 0, 0));
    }

    #[test]
    fn eu_rule_and_fixed_zones() {
        let paris = DayZone::parse("Europe/Paris").unwrap();
        assert_eq!(paris.offset_ms(utc(2025, 3, 30, 0, 59)), HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2025, 3, 30, 1, 0)), 2 * HOUR_MS);
        assert_eq!(paris.offset_ms(utc(2025, 10, 26, 1, 0)), HOUR_MS);
        let kolkata = DayZone::parse("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.next_reset_ms(utc(2025, 5, 5, 12, 0)), utc(2025, 5, 5, 18, 30));
        assert!(DayZone::parse("Mars/Olympus").is_none());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("2025-07-01T12:00:00Z"), Some(utc(2025, 7, 1, 12, 0)));
        assert_eq!(parse_rfc3339_ms("2025-07-01T12:00:00.25Z"), Some(utc(2025, 7, 1, 12, 0) + 250));
        assert_eq!(parse_rfc3339_ms("2025-07-01T14:00:00+02:00"), Some(utc(2025, 7, 1, 12, 0)));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
