//! The report as a terminal table or CSV.

use super::cache::ExpiryNotice;
use super::report::{MechanismRow, Report, Row};
use super::sessions::SessionRow;

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

fn opt_pct(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn render_table(rep: &Report) -> String {
    if rep.by == "mechanism" {
        return mechanism_table(&rep.mechanisms, &rep.total);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<24} {:>8} {:>12} {:>7} {:>10} {:>10} {:>7} {:>6} {:>10} {:>5} {:>5} {:>8} {:>8}\n",
        rep.by,
        "requests",
        "tok saved",
        "tok %",
        "cost $",
        "saved $",
        "$ %",
        "free",
        "free val $",
        "fallb",
        "errs",
        "p50 µs",
        "p95 µs"
    ));
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        let us = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24} {:>8} {:>12} {:>6.1}% {:>10.4} {:>10.4} {:>6.1}% {:>6} {:>10.4} {:>5} {:>5} {:>8} {:>8}\n",
            truncate(&r.key, 24),
            r.requests,
            r.saved_tokens(),
            pct(r.saved_tokens() as f64, r.tokens_before as f64),
            r.cost_usd,
            r.saved_cost(),
            pct(r.saved_cost(), r.baseline_cost_usd),
            r.free_requests,
            r.free_value_usd,
            r.fallbacks,
            r.errors,
            us(r.overhead_p50_us),
            us(r.overhead_p95_us),
        ));
    }
    if rep.total.usage_input + rep.total.cache_read + rep.total.cache_write > 0 {
        out.push('\n');
        out.push_str(&cache_table(rep));
    }
    out
}

/// The provider's prompt cache per key: uncached input, reads, writes, the hit share and what
/// the same tokens would have cost without the cache.
fn cache_table(rep: &Report) -> String {
    let mut out = format!(
        "{:<24} {:>12} {:>12} {:>12} {:>6} {:>10} {:>11} {:>13}\n",
        format!("prompt cache by {}", rep.by),
        "uncached in",
        "cache read",
        "cache write",
        "hit %",
        "billed $",
        "no-cache $",
        "cache saved $"
    );
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        out.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>12} {:>6} {:>10.4} {:>11.4} {:>13.4}\n",
            truncate(&r.key, 24),
            r.usage_input,
            r.cache_read,
            r.cache_write,
            opt_pct(r.cache_hit_pct),
            r.cost_usd,
            r.uncached_cost_usd,
            r.cache_saved_cost(),
        ));
    }
    out
}

/// One line when the 5-minute cache keeps expiring between turns; empty otherwise.
pub fn expiry_line(n: &ExpiryNotice) -> String {
    if n.rewrites == 0 {
        return String::new();
    }
    format!(
        "note: in {} conversation(s) the 5-minute prompt cache expired between turns {} time(s) ({} tokens written \
         again after a pause of 5-60 minutes); `[cache] anthropic_ttl = \"1h\"` keeps it an hour (writes cost 2x \
         input instead of 1.25x)\n",
        n.conversations, n.rewrites, n.tokens_rewritten
    )
}

fn mechanism_table(rows: &[MechanismRow], total: &Row) -> String {
    let mut out = format!(
        "{:<28} {:>9} {:>13} {:>7} {:>9} {:>8} {:>8} {:>6}\n",
        "mechanism", "requests", "tokens saved", "tok %", "elisions", "recalls", "recall %", "steps"
    );
    let mut sum = MechanismRow { key: "total".into(), ..MechanismRow::default() };
    for r in rows {
        sum.tokens_saved += r.tokens_saved;
        sum.elisions += r.elisions;
        sum.recalls += r.recalls;
        sum.steps += r.steps;
    }
    // A request counts once in the total however many mechanisms acted in it.
    sum.requests = total.requests;
    sum.recall_pct = (sum.elisions > 0).then(|| 100.0 * sum.recalls as f64 / sum.elisions as f64);
    for r in rows.iter().chain(std::iter::once(&sum)) {
        out.push_str(&format!(
            "{:<28} {:>9} {:>13} {:>6.1}% {:>9} {:>8} {:>8} {:>6}\n",
            truncate(&r.key, 28),
            r.requests,
            r.tokens_saved,
            pct(r.tokens_saved as f64, total.tokens_before as f64),
            r.elisions,
            r.recalls,
            opt_pct(r.recall_pct),
            r.steps,
        ));
    }
    out
}

pub fn render_csv(rep: &Report) -> String {
    if rep.by == "mechanism" {
        let mut out = String::from("mechanism,requests,tokens_saved,turn_tokens,elisions,recalls,recall_pct,steps\n");
        for r in &rep.mechanisms {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&r.key),
                r.requests,
                r.tokens_saved,
                r.turn_tokens,
                r.elisions,
                r.recalls,
                r.recall_pct.map(|p| format!("{p:.2}")).unwrap_or_default(),
                r.steps
            ));
        }
        return out;
    }
    let mut out = String::from(
        "key,requests,errors,fallbacks,tokens_before,tokens_after,cost_usd,baseline_cost_usd,free_requests,free_value_usd,overhead_p50_us,overhead_p95_us,usage_input,cache_read,cache_write,cache_hit_pct,uncached_cost_usd\n",
    );
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        let us = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&r.key),
            r.requests,
            r.errors,
            r.fallbacks,
            r.tokens_before,
            r.tokens_after,
            r.cost_usd,
            r.baseline_cost_usd,
            r.free_requests,
            r.free_value_usd,
            us(r.overhead_p50_us),
            us(r.overhead_p95_us),
            r.usage_input,
            r.cache_read,
            r.cache_write,
            r.cache_hit_pct.map(|p| format!("{p:.2}")).unwrap_or_default(),
            r.uncached_cost_usd
        ));
    }
    out
}

/// Conversations, newest first.
pub fn sessions_table(rows: &[SessionRow]) -> String {
    let mut out = format!(
        "{:<38} {:<16} {:<16} {:<12} {:>8} {:>10} {:>9} {:>11}\n",
        "session", "first", "last", "client", "requests", "tok saved", "saved $", "cache hit %"
    );
    for s in rows {
        out.push_str(&format!(
            "{:<38} {:<16} {:<16} {:<12} {:>8} {:>10} {:>9.4} {:>11}\n",
            truncate(&s.session, 38),
            utc_minute(s.first_ms),
            utc_minute(s.last_ms),
            truncate(&s.client, 12),
            s.requests,
            s.saved_tokens,
            s.saved_usd,
            opt_pct(s.cache_hit_pct)
        ));
    }
    out
}

/// `YYYY-MM-DD HH:MM` (UTC) of unix ms.
fn utc_minute(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| format!("@{ms}ms"), |t| t.strftime("%Y-%m-%d %H:%M").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_minutes() {
        assert_eq!(super::utc_minute(0), "1970-01-01 00:00");
        assert_eq!(super::utc_minute(20_780 * 86_400_000 + 3_660_000), "2026-11-23 01:01");
    }
}
