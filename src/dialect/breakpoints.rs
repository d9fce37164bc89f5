//! Anthropic prompt-cache breakpoints on the wire: where a Messages request could carry
//! `cache_control`, whether the client already set any, and adding ours by raw splice (the rest
//! of the body stays byte for byte). Which blocks get one is decided in `crate::cache`.

use std::ops::Range;

use crate::dialect::json::{self, is_array, is_object, is_string, Malformed, Obj};

/// How long Anthropic keeps a cache entry after its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheTtl {
    /// The default: writes cost 1.25x input.
    #[default]
    FiveMinutes,
    /// Writes cost 2x input; pays off for agents that pause longer than 5 minutes between turns.
    OneHour,
}

impl CacheTtl {
    /// `"5m"` or `"1h"`, as the API and the config spell them.
    pub fn parse(s: &str) -> Option<CacheTtl> {
        match s {
            "5m" => Some(CacheTtl::FiveMinutes),
            "1h" => Some(CacheTtl::OneHour),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheTtl::FiveMinutes => "5m",
            CacheTtl::OneHour => "1h",
        }
    }

    /// The member added to a block. The 5-minute TTL is the API's default and is left implicit.
    fn member(self) -> &'static [u8] {
        match self {
            CacheTtl::FiveMinutes => br#""cache_control":{"type":"ephemeral"}"#,
            CacheTtl::OneHour => br#""cache_control":{"type":"ephemeral","ttl":"1h"}"#,
        }
    }
}

/// Where a block sits in the cached prefix, which Anthropic orders tools, system, messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tools,
    System,
    /// `messages[i]`; `assistant` when the model wrote it.
    Message {
        index: u32,
        assistant: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A tool definition.
    Tool,
    Text,
    Image,
    Document,
    ToolUse,
    ToolResult,
    /// `thinking` and `redacted_thinking`: the API refuses `cache_control` on them.
    Thinking,
    /// Anything else (server tool blocks, unknown types): left alone.
    Other,
}

/// One block of the prefix, in the order the provider caches it.
#[derive(Debug, Clone)]
pub struct Site {
    pub section: Section,
    pub kind: BlockKind,
    /// May carry a breakpoint: a known block type that is not thinking and not empty text.
    pub cacheable: bool,
    /// Size of the block's JSON, the weight its tokens are estimated from.
    pub bytes: usize,
    /// The `tool_use_id` of a tool result (the id clearing names).
    pub tool_use_id: Option<String>,
    at: SpliceAt,
}

#[derive(Debug, Clone)]
enum SpliceAt {
    /// A block object: the member goes before its closing brace (at `close`).
    Object {
        close: usize,
        empty: bool,
    },
    /// A string `system` or message `content`: it becomes one text block carrying the member.
    Text(Range<usize>),
    Nowhere,
}

/// The blocks of a request, in cache order.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    pub sites: Vec<Site>,
}

/// Whether the body sets `cache_control` anywhere (a breakpoint of the client's own, or its
/// top-level caching setting). A key is a quoted name followed by a colon; inside a JSON string
/// the quotes would be escaped, so text that mentions the name does not count.
pub fn has_client_breakpoints(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"cache_control\"";
    memchr::memmem::find_iter(body, KEY).any(|at| body.get(json::skip_ws(body, at + KEY.len())) == Some(&b':'))
}

/// The blocks of an Anthropic Messages body. `Malformed` when it is not the JSON shape expected
/// (the caller then sends it as it is).
pub fn sites(b: &[u8]) -> Result<Sites, Malformed> {
    // One pass indexes where every container and long string ends, so the nested walk below
    // does not rescan a block once per level.
    json::with_index(b, || walk(b))
}

fn walk(b: &[u8]) -> Result<Sites, Malformed> {
    let top = Obj::parse(b, json::root(b)?)?;
    let mut sites = Vec::new();
    if let Some(tools) = top.get("tools").filter(|r| is_array(b, r)) {
        for t in json::items(b, tools)? {
            let at = if is_object(b, &t) { object_end(b, &t) } else { SpliceAt::Nowhere };
            let cacheable = matches!(at, SpliceAt::Object { empty: false, .. });
            sites.push(Site {
                section: Section::Tools,
                kind: BlockKind::Tool,
                cacheable,
                bytes: t.len(),
                tool_use_id: None,
                at,
            });
        }
    }
    if let Some(system) = top.get("system") {
        content(b, system, Section::System, &mut sites)?;
    }
    if let Some(messages) = top.get("messages").filter(|r| is_array(b, r)) {
        for (i, m) in json::items(b, messages)?.into_iter().enumerate() {
            if !is_object(b, &m) {
                continue;
            }
            let m = Obj::parse(b, m)?;
            let section =
                Section::Message { index: i as u32, assistant: m.str("role").as_deref() == Some("assistant") };
            if let Some(c) = m.get("content") {
                content(b, c, section, &mut sites)?;
            }
        }
    }
    Ok(Sites { sites })
}

/// A `system` or message `content` value: a string, or an array of blocks.
fn content(b: &[u8], r: Range<usize>, section: Section, out: &mut Vec<Site>) -> Result<(), Malformed> {
    if is_string(b, &r) {
        let cacheable = has_visible_text(b, &r);
        let bytes = r.len();
        out.push(Site { section, kind: BlockKind::Text, cacheable, bytes, tool_use_id: None, at: SpliceAt::Text(r) });
    } else if is_array(b, &r) {
        for item in json::items(b, r)? {
            out.push(block(b, item, section)?);
        }
    }
    Ok(())
}

fn block(b: &[u8], r: Range<usize>, section: Section) -> Result<Site, Malformed> {
    let bytes = r.len();
    if !is_object(b, &r) {
        return Ok(Site {
            section,
            kind: BlockKind::Other,
            cacheable: false,
            bytes,
            tool_use_id: None,
            at: SpliceAt::Nowhere,
        });
    }
    let o = Obj::parse(b, r.clone())?;
    let kind = match o.str("type").as_deref() {
        Some("text") => BlockKind::Text,
        Some("image") => BlockKind::Image,
        Some("document") => BlockKind::Document,
        Some("tool_use") => BlockKind::ToolUse,
        Some("tool_result") => BlockKind::ToolResult,
        Some("thinking" | "redacted_thinking") => BlockKind::Thinking,
        _ => BlockKind::Other,
    };
    // The API refuses `cache_control` on empty text (and on whitespace-only text any block).
    let cacheable = match kind {
        BlockKind::Text => o.get("text").is_some_and(|t| is_string(b, &t) && has_visible_text(b, &t)),
        BlockKind::Thinking | BlockKind::Other => false,
        _ => true,
    };
    let tool_use_id = (kind == BlockKind::ToolResult).then(|| o.str("tool_use_id").map(|s| s.into_owned())).flatten();
    Ok(Site { section, kind, cacheable, bytes, tool_use_id, at: object_end(b, &r) })
}

/// Whether the JSON string at `r` holds anything but whitespace, read from its raw bytes without
/// decoding it (tool outputs run to megabytes; the first visible character settles it).
fn has_visible_text(b: &[u8], r: &Range<usize>) -> bool {
    let inner = &b[r.start + 1..r.end.saturating_sub(1).max(r.start + 1)];
    let mut i = 0;
    while let Some(&c) = inner.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'\\' => match inner.get(i + 1) {
                Some(b'n' | b't' | b'r') => i += 2,
                Some(b'u')
                    if matches!(
                        inner.get(i + 2..i + 6),
                        Some(b"0020" | b"0009" | b"000a" | b"000A" | b"000d" | b"000D")
                    ) =>
                {
                    i += 6
                }
                _ => return true,
            },
            _ => return true,
        }
    }
    false
}

fn object_end(b: &[u8], r: &Range<usize>) -> SpliceAt {
    let empty = b.get(json::skip_ws(b, r.start + 1)) == Some(&b'}');
    SpliceAt::Object { close: r.end - 1, empty }
}

/// `body` with a breakpoint on each chosen site (indices into `sites`). Sites that cannot carry
/// one are skipped; with nothing to add the result equals `body`.
pub fn add(body: &[u8], sites: &Sites, chosen: &[usize], ttl: CacheTtl) -> Vec<u8> {
    let member = ttl.member();
    // (position, what replaces body[position..end]) in body order.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for site in chosen.iter().filter_map(|&i| sites.sites.get(i)).filter(|s| s.cacheable) {
        match &site.at {
            SpliceAt::Object { close, empty } => {
                let mut ins = Vec::with_capacity(member.len() + 1);
                if !empty {
                    ins.push(b',');
                }
                ins.extend_from_slice(member);
                edits.push((*close, *close, ins));
            }
            SpliceAt::Text(r) => {
                let mut ins = Vec::with_capacity(r.len() + member.len() + 32);
                ins.extend_from_slice(br#"[{"type":"text","text":"#);
                ins.extend_from_slice(&body[r.clone()]);
                ins.push(b',');
                ins.extend_from_slice(member);
                ins.extend_from_slice(b"}]");
                edits.push((r.start, r.end, ins));
            }
            SpliceAt::Nowhere => {}
        }
    }
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    let mut from = 0;
    for (start, end, ins) in edits {
        if start < from {
            continue; // two edits of one place: cannot happen with distinct sites, kept safe anyway
        }
        out.extend_from_slice(&body[from..start]);
        out.extend_from_slice(&ins);
        from = end;
    }
    out.extend_from_slice(&body[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const BODY: &str = r#"{"model":"claude-x","max_tokens":5,
      "tools":[{"name":"read","input_schema":{"type":"object"}},{"name":"bash","input_schema":{}}],
      "system":"You are a coding agent.",
      "messages":[
        {"role":"user","content":"fix the bug"},
        {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":""},{"type":"tool_use","id":"t1","name":"read","input":{}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"file text"},{ }]}
      ]}"#;

    fn kinds(s: &Sites) -> Vec<(Section, BlockKind, bool)> {
        s.sites.iter().map(|x| (x.section, x.kind, x.cacheable)).collect()
    }

    #[test]
    fn sites_come_in_cache_order_with_what_may_carry_a_breakpoint() {
        let s = sites(BODY.as_bytes()).unwrap();
        use BlockKind::*;
        use Section::*;
        let user = |index| Message { index, assistant: false };
        let model = |index| Message { index, assistant: true };
        assert_eq!(
            kinds(&s),
            [
                (Tools, Tool, true),
                (Tools, Tool, true),
                (System, Text, true),
                (user(0), Text, true),
                (model(1), Thinking, false),
                (model(1), Text, false),
                (model(1), ToolUse, true),
                (user(2), ToolResult, true),
                (user(2), Other, false),
            ]
        );
        assert_eq!(s.sites[7].tool_use_id.as_deref(), Some("t1"));
        assert!(!has_client_breakpoints(BODY.as_bytes()));
    }

    #[test]
    fn adding_splices_members_and_turns_strings_into_blocks() {
        let b = BODY.as_bytes();
        let s = sites(b).unwrap();
        let out = add(b, &s, &[1, 2, 7], CacheTtl::FiveMinutes);
        let v: Value = serde_json::from_slice(&out).unwrap();
        let cc = serde_json::json!({"type": "ephemeral"});
        assert_eq!(v["tools"][1]["cache_control"], cc);
        assert!(v["tools"][0].get("cache_control").is_none());
        assert_eq!(
            v["system"],
            serde_json::json!([{"type": "text", "text": "You are a coding agent.", "cache_control": cc}])
        );
        assert_eq!(v["messages"][2]["content"][0]["cache_control"], cc);
        assert!(has_client_breakpoints(&out));
        // Everything else is byte-identical: removing what was added gives the body back.
        let back = String::from_utf8(out)
            .unwrap()
            .replace(r#","cache_control":{"type":"ephemeral"}"#, "")
            .replace(r#"[{"type":"text","text":"You are a coding agent."}]"#, r#""You are a coding agent.""#);
        assert_eq!(back, BODY);
    }

    #[test]
    fn one_hour_ttl_and_sites_that_cannot_carry_one() {
        let b = BODY.as_bytes();
        let s = sites(b).unwrap();
        let out = add(b, &s, &[3], CacheTtl::OneHour);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][0]["content"][0]["cache_control"]["ttl"], "1h");
        // Thinking, empty text and unknown blocks are never marked; nothing chosen, nothing changed.
        assert_eq!(add(b, &s, &[4, 5, 8, 99], CacheTtl::FiveMinutes), b);
        assert_eq!(add(b, &s, &[], CacheTtl::FiveMinutes), b);
    }

    #[test]
    fn client_breakpoints_are_keys_not_mentions() {
        let mention =
            r#"{"messages":[{"role":"user","content":"set \"cache_control\": on blocks, or \"cache_control\""}]}"#;
        assert!(!has_client_breakpoints(mention.as_bytes()));
        let set = r#"{"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control" : {"type":"ephemeral"}}]}]}"#;
        assert!(has_client_breakpoints(set.as_bytes()));
        let top = r#"{"cache_control":{"type":"ephemeral"},"messages":[]}"#;
        assert!(has_client_breakpoints(top.as_bytes()));
    }

    #[test]
    fn visible_text_is_told_from_whitespace_without_decoding() {
        let visible = |json: &str| has_visible_text(json.as_bytes(), &(0..json.len()));
        for blank in [r#""""#, r#"" ""#, r#"" \n\t\r ""#, r#""\u0020\u000A""#] {
            assert!(!visible(blank), "{blank}");
        }
        for text in [r#""x""#, r#"" \n x""#, r#""\"""#, r#""\u00e9""#, r#""\\""#, r#""n""#] {
            assert!(visible(text), "{text}");
        }
    }

    #[test]
    fn odd_shapes_give_no_sites_or_an_error_never_a_panic() {
        assert!(sites(b"{\"messages\":[{\"role\":\"user\"}]}").unwrap().sites.is_empty());
        assert!(sites(b"{\"messages\":\"x\",\"system\":[],\"tools\":{}}").unwrap().sites.is_empty());
        let empty_system = sites(b"{\"system\":\"  \",\"messages\":[1,{\"content\":[{}]}]}").unwrap();
        let m1 = Section::Message { index: 1, assistant: false };
        assert_eq!(kinds(&empty_system), [(Section::System, BlockKind::Text, false), (m1, BlockKind::Other, false)]);
        for bad in [&b"{\"messages\":[{\"content\":\"x"[..], b"[]", b"", b"{\"tools\":[{]}"] {
            assert!(sites(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
