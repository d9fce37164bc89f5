//! The report as a terminal table or CSV.

use super::cache::ExpiryNotice;
use super::report::{MechanismRow, Report, Row};
use super::sessions::SessionRow;
use crate::table::{clip, pct, Align, Keep, Table};

fn opt_pct(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into())
}

/// A report key in its column.
fn key(s: &str, max: usize) -> String {
    clip(s, max, Keep::Start)
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn render_table(rep: &Report) -> String {
    if rep.by == "mechanism" {
        return mechanism_table(&rep.mechanisms, &rep.total);
    }
    let by = rep.by.as_str();
    let mut t = Table::new(&[
        (by, Align::Left),
        ("requests", Align::Right),
        ("tok saved", Align::Right),
        ("tok %", Align::Right),
        ("cost $", Align::Right),
        ("saved $", Align::Right),
        ("$ %", Align::Right),
        ("free", Align::Right),
        ("free val $", Align::Right),
        ("fallb", Align::Right),
        ("errs", Align::Right),
        ("p50 µs", Align::Right),
        ("p95 µs", Align::Right),
    ]);
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        let us = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        t.row([
            key(&r.key, 24),
            r.requests.to_string(),
            r.saved_tokens().to_string(),
            format!("{:.1}%", pct(r.saved_tokens() as f64, r.tokens_before as f64)),
            format!("{:.4}", r.cost_usd),
            format!("{:.4}", r.saved_cost()),
            format!("{:.1}%", pct(r.saved_cost(), r.baseline_cost_usd)),
            r.free_requests.to_string(),
            format!("{:.4}", r.free_value_usd),
            r.fallbacks.to_string(),
            r.errors.to_string(),
            us(r.overhead_p50_us),
            us(r.overhead_p95_us),
        ]);
    }
    let mut out = t.render();
    if rep.total.usage_input + rep.total.cache_read + rep.total.cache_write > 0 {
        out.push('\n');
        out.push_str(&cache_table(rep));
    }
    out
}

/// The provider's prompt cache per key: uncached input, reads, writes, the hit share and what
/// the same tokens would have cost without the cache.
fn cache_table(rep: &Report) -> String {
    let title = format!("prompt cache by {}", rep.by);
    let mut t = Table::new(&[
        (&title, Align::Left),
        ("uncached in", Align::Right),
        ("cache read", Align::Right),
        ("cache write", Align::Right),
        ("hit %", Align::Right),
        ("billed $", Align::Right),
        ("no-cache $", Align::Right),
        ("cache saved $", Align::Right),
    ]);
    for r in rep.rows.iter().chain(std::iter::once(&rep.total)) {
        t.row([
            key(&r.key, 24),
            r.usage_input.to_string(),
            r.cache_read.to_string(),
            r.cache_write.to_string(),
            opt_pct(r.cache_hit_pct),
            format!("{:.4}", r.cost_usd),
            format!("{:.4}", r.uncached_cost_usd),
            format!("{:.4}", r.cache_saved_cost()),
        ]);
    }
    t.render()
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
    let mut t = Table::new(&[
        ("mechanism", Align::Left),
        ("requests", Align::Right),
        ("tokens saved", Align::Right),
        ("tok %", Align::Right),
        ("elisions", Align::Right),
        ("recalls", Align::Right),
        ("recall %", Align::Right),
        ("steps", Align::Right),
    ]);
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
        t.row([
            key(&r.key, 28),
            r.requests.to_string(),
            r.tokens_saved.to_string(),
            format!("{:.1}%", pct(r.tokens_saved as f64, total.tokens_before as f64)),
            r.elisions.to_string(),
            r.recalls.to_string(),
            opt_pct(r.recall_pct),
            r.steps.to_string(),
        ]);
    }
    t.render()
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
    let mut t = Table::new(&[
        ("session", Align::Left),
        ("first", Align::Left),
        ("last", Align::Left),
        ("client", Align::Left),
        ("requests", Align::Right),
        ("tok saved", Align::Right),
        ("saved $", Align::Right),
        ("cache hit %", Align::Right),
    ]);
    for s in rows {
        t.row([
            key(&s.session, 38),
            utc_minute(s.first_ms),
            utc_minute(s.last_ms),
            key(&s.client, 12),
            s.requests.to_string(),
            s.saved_tokens.to_string(),
            format!("{:.4}", s.saved_usd),
            opt_pct(s.cache_hit_pct),
        ]);
    }
    t.render()
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
