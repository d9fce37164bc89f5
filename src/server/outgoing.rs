//! What one attempt sends: the body (translated when the target speaks another dialect, or the
//! model renamed), and the path and query under the target's base URL. Gemini names the model
//! and streaming in the URL, so its requests get their path from the model.

use bytes::Bytes;

use super::error::ProxyError;
use super::fallback::UpstreamRequest;
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

/// What the request needs to know about the attempt's target.
pub struct TargetFacts<'a> {
    pub dialect: Dialect,
    /// The model name to send instead of the client's, when set.
    pub model_override: Option<&'a str>,
    /// The target's model takes reasoning settings.
    pub reasoning: bool,
    /// The target uses the provider's key (a client's `key=` is then not passed on).
    pub own_key: bool,
    /// The target refuses OpenAI's `prompt_cache_key`.
    pub drop_prompt_cache_key: bool,
}

/// The request for the attempt's target; `body` is the request in the client's dialect as this
/// attempt sends it (folded, and cleared for this target).
pub fn prepare(req: &UpstreamRequest<'_>, body: &Bytes, facts: &TargetFacts<'_>) -> Result<Outgoing, ProxyError> {
    let (target, model_override, own_key) = (facts.dialect, facts.model_override, facts.own_key);
    let translating = target != req.ingress;
    let client_query = req.parts.uri.query();
    // A Gemini body does not name its model: renaming it changes only the path.
    let renames_in_body = model_override.is_some() && req.ingress != Dialect::Gemini;
    let (body, reply) = if translating || renames_in_body {
        let opts = RequestOptions {
            model: model_override,
            target_reasoning: facts.reasoning,
            drop_prompt_cache_key: facts.drop_prompt_cache_key,
            gemini: req.gemini,
        };
        let t = translate::translate_request_for_reply(req.ingress, target, body, &opts)?;
        (Bytes::from(t.body), t.reply)
    } else {
        (body.clone(), ReplyContext::default())
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
