//! Folding: removes repeated context from a request before it is forwarded.
//! This is the seam the proxy calls; the engine itself lands with the fold issue.

use bytes::Bytes;

use crate::dialect::Dialect;

/// A request body after folding.
pub struct Folded {
    pub body: Bytes,
    /// Estimated tokens removed from the request.
    pub saved_tokens: u64,
}

pub struct Folder {
    enabled: bool,
}

impl Folder {
    pub fn new(enabled: bool) -> Folder {
        Folder { enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Folds `body` (a request of `dialect`). `None` means nothing was folded: forward the
    /// original bytes.
    pub fn fold(&self, _dialect: Dialect, _body: &Bytes) -> Option<Folded> {
        None
    }
}
