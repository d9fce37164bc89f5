//! Non-streaming response bodies, one file per client dialect.

pub(crate) mod to_anthropic;
pub(crate) mod to_chat;
pub(crate) mod to_gemini;
pub(crate) mod to_responses;
