//! `POST /v1/messages/count_tokens` answered by the proxy when the target is not Anthropic (and
//! Gemini's `:countTokens` when it is not Gemini): an o200k estimate of the (folded) request's
//! text, labelled as an estimate, in the client's shape.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

use super::error::ProxyError;
use super::Body;
use crate::dialect::Dialect;

pub fn answer_locally_for(dialect: Dialect, body: &Bytes) -> Result<Response<Body>, ProxyError> {
    let value: Value = serde_json::from_slice(body)?;
    let mut text = String::new();
    collect_strings(&value, &mut text);
    let tokens = crate::tokens::count(&text);
    let json = match dialect {
        Dialect::Gemini => serde_json::json!({ "totalTokens": tokens }),
        _ => serde_json::json!({ "input_tokens": tokens }),
    };
    let mut r = super::handlers::json_response(StatusCode::OK, Bytes::from(json.to_string()));
    r.headers_mut().insert("x-tokenfold-estimate", HeaderValue::from_static("o200k_base"));
    Ok(r)
}

/// Every string value and object key: what a tokenizer would see of the request's content.
fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Not text the model reads: names, cache hints, opaque thought signatures.
                if k == "model" || k == "cache_control" || k == "thoughtSignature" {
                    continue;
                }
                out.push_str(k);
                out.push(' ');
                collect_strings(v, out);
            }
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        _ => {}
    }
}
