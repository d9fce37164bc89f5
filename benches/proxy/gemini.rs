//! The Gemini rows of the proxy bench: passthrough (a Gemini client on a Gemini upstream) and
//! translation both ways with Chat, and Anthropic on Gemini.

use std::net::SocketAddr;
use std::path::Path;

use super::support::{self, chat_body, Api, Conn, Prepared};
use super::{pair_with, percentile, us, Pair, Plan, KB};

/// One measured row: the proxy's upstream dialect (none: passthrough), its name and JSON key, the
/// request sent straight to the mock and the one sent through the proxy, and whether the time is
/// to the first event.
struct Row<'a> {
    upstream: Option<&'static str>,
    name: &'static str,
    key: &'static str,
    direct: &'a Prepared,
    via: &'a Prepared,
    first_event: bool,
}

/// Each row against the upstream's own request sent straight to the mock. `(row name, JSON key, latencies)`.
pub fn rows(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    mock: SocketAddr,
    ledger: &Path,
) -> Vec<(&'static str, &'static str, Pair)> {
    let gemini = chat_body(Api::Gemini { stream: false }, KB, false);
    let gemini_stream = chat_body(Api::Gemini { stream: true }, KB, true);
    let chat = chat_body(Api::OpenaiChat, KB, false);
    let chat_stream = chat_body(Api::OpenaiChat, KB, true);
    let anthropic = chat_body(Api::Anthropic, KB, false);
    let row = |upstream, name, key, direct, via, first_event| Row { upstream, name, key, direct, via, first_event };
    let rows = [
        row(None, "1 KB Gemini `:generateContent` (passthrough)", "latency_c1_1k_gemini", &gemini, &gemini, false),
        row(
            None,
            "Gemini stream, time to first event, 1 KB",
            "stream_first_event_c1_1k_gemini",
            &gemini_stream,
            &gemini_stream,
            true,
        ),
        row(
            Some("openai-chat"),
            "1 KB Gemini client -> OpenAI Chat upstream (translated)",
            "translated_request_gemini_to_chat_c1_1k",
            &chat,
            &gemini,
            false,
        ),
        row(
            Some("openai-chat"),
            "Gemini client -> Chat stream, time to first event, 1 KB",
            "translated_stream_gemini_to_chat_c1_1k",
            &chat_stream,
            &gemini_stream,
            true,
        ),
        row(
            Some("gemini"),
            "1 KB OpenAI Chat client -> Gemini upstream (translated)",
            "translated_request_chat_to_gemini_c1_1k",
            &gemini,
            &chat,
            false,
        ),
        row(
            Some("gemini"),
            "1 KB Anthropic client -> Gemini upstream (translated)",
            "translated_request_anthropic_to_gemini_c1_1k",
            &gemini,
            &anthropic,
            false,
        ),
    ];
    let mut out = Vec::new();
    for Row { upstream: dialect, name, key, direct: direct_req, via: via_req, first_event } in rows {
        let mut extra: Vec<&str> = dialect.map(|d| vec!["--upstream-dialect", d]).unwrap_or_default();
        if dialect == Some("gemini") {
            // Gemini's model is in the path: the one the mock serves.
            extra.extend(["--upstream-model", "gemini-bench"]);
        }
        let proxy = support::spawn_proxy_with(bin, mock, ledger, &extra).expect("the Gemini bench proxy starts");
        eprintln!("bench: {name}");
        let n = if first_event { plan.stream_requests } else { plan.latency_requests };
        let measured = rt.block_on(async {
            let (mut direct, mut via) = (Conn::open(mock).await?, Conn::open(proxy.addr).await?);
            pair_with(plan, n, &mut direct, &mut via, direct_req, via_req, first_event).await
        });
        let measured = measured.unwrap_or_else(|e| {
            panic!(
                "{name}: {e}
{}",
                proxy.log_tail()
            )
        });
        out.push((name, key, measured));
    }
    out
}

/// The rows, in the format of the translated rows above them.
pub fn print_rows(rows: &[(&'static str, &'static str, Pair)]) {
    for (name, key, p) in rows {
        let (d50, d99) = (percentile(&p.direct, 0.5), percentile(&p.direct, 0.99));
        let (p50, p99) = (percentile(&p.proxy, 0.5), percentile(&p.proxy, 0.99));
        let (a50, a99) = (p50.saturating_sub(d50), p99.saturating_sub(d99));
        // Chat's first chunk says only the role; a Gemini stream's first event is its first
        // text, which the mock sends a stream gap later.
        let note = if *key == "translated_stream_gemini_to_chat_c1_1k" {
            format!(
                "first Gemini event = first text, sent {} ms after Chat's role-only first chunk",
                support::STREAM_GAP.as_millis()
            )
        } else {
            String::new()
        };
        let f = |d| format!("{:.1} µs", us(d));
        println!(
            "| {name} p50 / p99 | {} / {} | {} / {} | +{} / +{} | {note} |",
            f(d50),
            f(d99),
            f(p50),
            f(p99),
            f(a50),
            f(a99)
        );
    }
}
