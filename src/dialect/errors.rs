//! Error bodies in each dialect's own shape.

use super::Dialect;

/// What kind of failure an error is, independent of dialect. Each maps to the type string
/// both families of clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    TooLarge,
    RateLimit,
    Api,
    Overloaded,
    Timeout,
}

impl ErrorClass {
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorClass::InvalidRequest => "invalid_request_error",
            ErrorClass::Authentication => "authentication_error",
            ErrorClass::Permission => "permission_error",
            ErrorClass::NotFound => "not_found_error",
            ErrorClass::TooLarge => "request_too_large",
            ErrorClass::RateLimit => "rate_limit_error",
            ErrorClass::Api | ErrorClass::Timeout => "api_error",
            ErrorClass::Overloaded => "overloaded_error",
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorClass::InvalidRequest | ErrorClass::NotFound | ErrorClass::TooLarge => "invalid_request_error",
            ErrorClass::Authentication => "authentication_error",
            ErrorClass::Permission => "permission_error",
            ErrorClass::RateLimit => "rate_limit_error",
            ErrorClass::Api | ErrorClass::Overloaded => "api_error",
            ErrorClass::Timeout => "timeout_error",
        }
    }
}

/// The JSON error body for `dialect`. A Gemini body's `code` is the status Google gives the class;
/// `error_body_with_status` sets it to the answer's own.
pub fn error_body(dialect: Dialect, class: ErrorClass, message: &str) -> Vec<u8> {
    error_body_with_status(dialect, class, message, super::gemini::http_status(class))
}

/// `error_body`, for an answer sent with HTTP `status`.
pub fn error_body_with_status(dialect: Dialect, class: ErrorClass, message: &str, status: u16) -> Vec<u8> {
    let value = if dialect == Dialect::Gemini {
        super::gemini::error_value(status, class, message)
    } else if dialect.is_anthropic() {
        serde_json::json!({
            "type": "error",
            "error": { "type": class.anthropic_type(), "message": message }
        })
    } else {
        serde_json::json!({
            "error": { "message": message, "type": class.openai_type(), "param": null, "code": null }
        })
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// An error delivered inside an already-started event stream, in the dialect's own event shape.
pub fn error_event(dialect: Dialect, class: ErrorClass, message: &str) -> Vec<u8> {
    let body = error_body(dialect, class, message);
    let mut out = Vec::with_capacity(body.len() + 32);
    match dialect {
        Dialect::Anthropic => out.extend_from_slice(b"event: error\ndata: "),
        Dialect::OpenaiResponses => {
            // Responses streams carry `type: "error"` events with the fields at top level.
            let value = serde_json::json!({
                "type": "error",
                "code": class.openai_type(),
                "message": message,
                "param": null,
            });
            out.extend_from_slice(b"event: error\ndata: ");
            out.extend_from_slice(&serde_json::to_vec(&value).unwrap_or_default());
            out.extend_from_slice(b"\n\n");
            return out;
        }
        // Gemini streams carry an error as a `data:` event holding the error body.
        Dialect::OpenaiChat | Dialect::Gemini => out.extend_from_slice(b"data: "),
    }
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_body(Dialect::Anthropic, ErrorClass::TooLarge, "big")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "request_too_large");
        assert_eq!(v["error"]["message"], "big");
    }

    #[test]
    fn openai_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_body(Dialect::OpenaiChat, ErrorClass::NotFound, "nope")).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "nope");
        assert!(v.get("type").is_none());
    }

    #[test]
    fn gemini_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_body_with_status(Dialect::Gemini, ErrorClass::Api, "down", 502)).unwrap();
        assert_eq!(v["error"]["code"], 502);
        assert_eq!(v["error"]["status"], "INTERNAL");
        assert_eq!(v["error"]["message"], "down");
    }

    #[test]
    fn stream_error_events_are_complete_sse_events() {
        for d in Dialect::ALL {
            let ev = error_event(d, ErrorClass::Timeout, "idle");
            assert!(ev.ends_with(b"\n\n"), "{d}");
            let text = String::from_utf8(ev).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let _: serde_json::Value = serde_json::from_str(data).unwrap();
        }
    }
}
