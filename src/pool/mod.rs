//! Choosing where a request goes. Until routes and quotas land this is the seam: each ingress
//! dialect maps to the one provider configured for it.

pub mod upstream;

use std::sync::Arc;

use crate::config::{Config, Provider, ProviderAuth};
use crate::dialect::Dialect;
use crate::server::error::ProxyError;

/// One place a request can be sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    /// The dialect the target speaks; differs from the ingress dialect only through translation.
    pub dialect: Dialect,
}

pub struct Pool {
    default_upstream: Vec<(Dialect, Arc<Provider>)>,
}

impl Pool {
    pub fn new(cfg: &Config) -> Pool {
        let default_upstream = Dialect::ALL
            .into_iter()
            .filter_map(|d| cfg.upstream_for(d).map(|p| (d, Arc::new(p.clone()))))
            .collect();
        Pool { default_upstream }
    }

    /// The ordered targets to try for a request of `ingress` dialect asking for `model`.
    pub fn targets(&self, ingress: Dialect, _model: Option<&str>) -> Result<Vec<Target>, ProxyError> {
        let provider = self
            .default_upstream
            .iter()
            .find(|(d, _)| *d == ingress)
            .map(|(_, p)| p.clone())
            .ok_or(ProxyError::NoUpstream(ingress))?;
        if let ProviderAuth::MissingKey { var, .. } = &provider.auth {
            return Err(ProxyError::ProviderKeyMissing { provider: provider.name.clone(), var: var.clone() });
        }
        Ok(vec![Target { dialect: provider.dialect, provider }])
    }
}
