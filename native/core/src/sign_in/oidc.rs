//! OAuth 2.0 client credentials (RFC 6749 4.4) against an OIDC token
//! endpoint: what Confluent Cloud, Keycloak, Entra ID and Okta issue
//! Kafka tokens with.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::config::cloud_sign_in::OAuthBearerConfig;
use crate::config::security::read_pem;
use crate::sign_in::http::{without_query, Http};
use crate::sign_in::token::{Token, TokenSource};

/// The token request's time limit: it runs on the producer thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ClientCredentials {
    config: OAuthBearerConfig,
    http: Http,
}

impl ClientCredentials {
    pub fn new(config: &OAuthBearerConfig) -> Result<ClientCredentials, String> {
        let ca = if config.ca.is_empty() { None } else { Some(read_pem("kafka.sasl.oauthbearer.ca", &config.ca)?.0) };
        let http = Http::new(REQUEST_TIMEOUT, ca.as_deref()).map_err(|e| format!("kafka.sasl.oauthbearer.ca: {e}"))?;
        Ok(ClientCredentials { config: config.clone(), http })
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self, now_ms: i64) -> Result<Token, String> {
        let config = &self.config;
        let endpoint = without_query(&config.token_endpoint);
        // client_secret_basic, as librdkafka's and Kafka's own OIDC clients send it.
        let basic = format!("Basic {}", STANDARD.encode(format!("{}:{}", config.client_id, config.client_secret)));
        let mut form = vec![("grant_type", "client_credentials")];
        if !config.scope.is_empty() {
            form.push(("scope", config.scope.as_str()));
        }
        let headers = [("Authorization", basic.as_str()), ("Accept", "application/json")];
        let response = self.http.post_form(&config.token_endpoint, &headers, &form).map_err(|e| format!("token {e}"))?;
        if response.status != 200 {
            return Err(format!("token request to {endpoint} failed: HTTP {}{}", response.status, oauth_error(&response.body)));
        }
        let answer: serde_json::Value =
            serde_json::from_str(&response.body).map_err(|_| format!("token response from {endpoint} is not JSON"))?;
        let access_token = answer
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token response from {endpoint} has no access_token"))?;
        let claims = jwt_claims(access_token);
        let claim = |name: &str| claims.as_ref().and_then(|c| c.get(name).cloned());
        // The JWT's own expiry when it has one, as Kafka checks that.
        let expires_at_ms = match (claim("exp").and_then(|v| v.as_f64()), answer.get("expires_in").and_then(|v| v.as_f64())) {
            (Some(exp), _) => (exp * 1000.0) as i64,
            (None, Some(expires_in)) => now_ms + (expires_in * 1000.0) as i64,
            (None, None) => return Err(format!("token response from {endpoint} gives no expiry (no exp claim, no expires_in)")),
        };
        if expires_at_ms <= now_ms {
            return Err(format!("token from {endpoint} has already expired"));
        }
        let principal = claim("sub").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| config.client_id.clone());
        Ok(Token { value: access_token.to_string(), expires_at_ms, principal, extensions: config.extensions.clone() })
    }

    fn describe(&self) -> String {
        format!("OIDC token endpoint {}", without_query(&self.config.token_endpoint))
    }
}

/// The payload of a JWT, if the token is one (tokens may be opaque).
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// RFC 6749's `error` and `error_description`, which name what was wrong
/// (`invalid_client`) and never echo the secret; nothing else of the body.
fn oauth_error(body: &str) -> String {
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else { return String::new() };
    let text = |name| answer.get(name).and_then(|v| v.as_str()).map(|s| s.chars().take(200).collect::<String>());
    match (text("error"), text("error_description")) {
        (Some(error), Some(description)) => format!(" ({error}: {description})"),
        (Some(error), None) => format!(" ({error})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claims_and_errors() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"svc","exp":1796551200}"#);
        let claims = jwt_claims(&format!("h.{payload}.s")).unwrap();
        assert_eq!(claims["sub"], "svc");
        assert!(jwt_claims("opaque-token").is_none());
        assert_eq!(oauth_error(r#"{"error":"invalid_client","error_description":"bad secret"}"#), " (invalid_client: bad secret)");
        assert_eq!(oauth_error("<html>"), "");
    }
}
