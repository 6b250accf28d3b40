//! Adapters for plain HTTPS peers that are not Azure (webhook receivers,
//! and in time GitHub, Azure DevOps and Teams): one file per peer.

pub mod webhooks;
