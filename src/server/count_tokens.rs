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
    crate::tokens::request_text(&value, &mut text);
    let tokens = crate::tokens::count(&text);
    let json = match dialect {
        Dialect::Gemini => serde_json::json!({ "totalTokens": tokens }),
        _ => serde_json::json!({ "input_tokens": tokens }),
    };
    let mut r = super::handlers::json_response(StatusCode::OK, Bytes::from(json.to_string()));
    r.headers_mut().insert("x-tokenfold-estimate", HeaderValue::from_static("o200k_base"));
    Ok(r)
}
