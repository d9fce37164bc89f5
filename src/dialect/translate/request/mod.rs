//! Request bodies, one file per source dialect.

pub(crate) mod from_anthropic;
pub(crate) mod from_chat;
pub(crate) mod from_gemini;
pub(crate) mod from_responses;
pub(crate) mod to_gemini;
pub(crate) mod to_responses;

use serde_json::Value;

use super::json::Get;
use super::{RequestOptions, TranslateError};

/// The model name for the translated request: the override, else the client's.
pub(crate) fn model(req: &Value, opts: &RequestOptions<'_>) -> Result<Value, TranslateError> {
    match opts.model.or_else(|| req.str_of("model")) {
        Some(m) => Ok(Value::String(m.to_string())),
        None => Err(TranslateError::invalid("model", "missing")),
    }
}

/// Same dialect, new model name.
pub(crate) fn with_model(mut req: Value, model: Option<&str>) -> Value {
    if let (Some(m), Some(obj)) = (model, req.as_object_mut()) {
        obj.insert("model".to_string(), Value::String(m.to_string()));
    }
    req
}
