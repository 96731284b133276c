//! Token sign-ins (SASL/OAUTHBEARER): an OIDC provider's token, or an AWS
//! MSK IAM token signed with AWS credentials. A `TokenSource` fetches one
//! on the producer thread (`kafka::token_refresh` decides when); nothing
//! here runs on a scheduler.

pub mod aws_credentials;
pub mod http;
pub mod msk_iam;
pub mod oidc;
pub mod sigv4;
pub mod token;
pub mod utc;
#[cfg(test)]
mod chain_tests;

use std::sync::Arc;

use crate::config::cloud_sign_in::TokenSignIn;
use token::TokenSource;

/// The source `sign_in` selects, if any.
pub fn source(sign_in: &TokenSignIn) -> Result<Option<Arc<dyn TokenSource>>, String> {
    Ok(match sign_in {
        TokenSignIn::None => None,
        TokenSignIn::OAuthBearer(config) => Some(Arc::new(oidc::ClientCredentials::new(config)?)),
        TokenSignIn::AwsMskIam(config) => Some(Arc::new(msk_iam::MskIam::new(config)?)),
    })
}
