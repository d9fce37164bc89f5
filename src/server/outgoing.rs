//! What one attempt sends: the body (translated when the target speaks another dialect, or the
//! model renamed), and the path and query under the target's base URL. Gemini names the model
//! and streaming in the URL, so its requests get their path from the model.

use bytes::Bytes;

use super::error::ProxyError;
use super::forward::UpstreamRequest;
use crate::dialect::translate::{self, ReplyContext, RequestOptions};
use crate::dialect::{gemini, Dialect};

pub struct Outgoing {
    pub body: Bytes,
    /// Under the target's base URL (which ends in its API version).
    pub path: String,
    pub query: Option<String>,
    /// What translating the answer needs.
    pub reply: ReplyContext,
}

/// The request for `target` (a dialect) with the model name `model_override` when set.
/// `own_key`: the target uses the provider's key (a client's `key=` is then not passed on).
pub fn prepare(
    req: &UpstreamRequest<'_>,
    target: Dialect,
    model_override: Option<&str>,
    target_reasoning: bool,
    own_key: bool,
) -> Result<Outgoing, ProxyError> {
    let translating = target != req.ingress;
    let client_query = req.parts.uri.query();
    // A Gemini body does not name its model: renaming it changes only the path.
    let renames_in_body = model_override.is_some() && req.ingress != Dialect::Gemini;
    let (body, reply) = if translating || renames_in_body {
        let opts = RequestOptions { model: model_override, target_reasoning, gemini: req.gemini };
        let t = translate::translate_request_for_reply(req.ingress, target, &req.body, &opts)
            .map_err(|e| ProxyError::Untranslatable(e.to_string()))?;
        (Bytes::from(t.body), t.reply)
    } else {
        (req.body.clone(), ReplyContext::default())
    };
    let model = model_override.or(req.envelope.model.as_deref()).unwrap_or_default();
    let (path, query) = match (req.gemini, target) {
        // Gemini to Gemini: the client's method and query (less a key the provider replaces).
        (Some(call), Dialect::Gemini) => {
            let query =
                if own_key { gemini::query_without_key(client_query) } else { client_query.map(str::to_string) };
            (call.path_for(model), query)
        }
        (None, Dialect::Gemini) => {
            let call = gemini::Call::for_target(model, req.envelope.stream.unwrap_or(false));
            (call.path_for(model), call.query().map(str::to_string))
        }
        // From Gemini: the target's endpoint; the client's query (`alt=sse`, `key=`) is Gemini's own.
        (Some(_), _) => (endpoint(target), None),
        (None, _) if translating => (endpoint(target), client_query.map(str::to_string)),
        (None, _) => (req.route.to_string(), client_query.map(str::to_string)),
    };
    Ok(Outgoing { body, path, query, reply })
}

/// The path of a dialect's endpoint under a base URL that ends in `/v1`.
fn endpoint(d: Dialect) -> String {
    d.endpoint_path().trim_start_matches("/v1").to_string()
}
