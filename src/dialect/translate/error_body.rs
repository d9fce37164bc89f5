//! Upstream error responses re-shaped for the client's dialect, keeping the provider's message.

use serde_json::Value;

use super::common::{class_from_status, error_parts};
use super::Dialect;
use crate::dialect::errors::error_body_with_status;

/// Longest provider message kept when the body is not JSON (an HTML error page, say).
const MAX_RAW_MESSAGE: usize = 2000;

/// An upstream error response (status + body) -> error body in the client's dialect (keep the
/// provider's message).
pub fn translate_error(upstream: Dialect, client: Dialect, status: u16, body: &[u8]) -> Vec<u8> {
    if upstream == client {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            if v.get("error").is_some() || crate::dialect::gemini::error_object(&v).is_some() {
                return body.to_vec();
            }
        }
    }
    let (class, message) = match serde_json::from_slice::<Value>(body) {
        // Google answers some errors as a one-element array.
        Ok(v) => match v.get("error").or_else(|| crate::dialect::gemini::error_object(&v)) {
            Some(err) => error_parts(err),
            // Some servers answer `{"message": "..."}` or `{"detail": "..."}`.
            None => (None, v.get("message").or(v.get("detail")).and_then(Value::as_str).map(str::to_string)),
        },
        Err(_) => (None, raw_message(body)),
    };
    let message = message.filter(|m| !m.is_empty()).unwrap_or_else(|| format!("upstream returned HTTP {status}"));
    error_body_with_status(client, class.unwrap_or_else(|| class_from_status(status)), &message, status)
}

fn raw_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut end = text.len().min(MAX_RAW_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_string())
}
