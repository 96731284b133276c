//! The HTTP requests of the sign-ins: one agent per source, with short
//! timeouts (they run on the producer thread), no proxy from the
//! environment (AWS's metadata endpoints must never go through one), and
//! errors that name the endpoint and the status, never a header or body
//! that could hold a secret.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The response bodies read, at most: tokens and credentials are small.
const MAX_BODY_BYTES: u64 = 1 << 20;

pub struct Http {
    agent: ureq::Agent,
}

pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Http {
    /// `ca_pem`: the CAs to trust instead of the system's store.
    pub fn new(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<Http, String> {
        let roots = match ca_pem {
            None => RootCerts::PlatformVerifier,
            Some(pem) => {
                let certificates = ureq::tls::parse_pem(pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(certificate)) => Some(Ok(certificate)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<Vec<Certificate<'static>>, _>>()
                    .map_err(|e| format!("not a PEM certificate: {e}"))?;
                RootCerts::Specific(Arc::new(certificates))
            }
        };
        let tls = TlsConfig::builder().provider(TlsProvider::NativeTls).root_certs(roots).build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("emqx-plugin-kafka-bridge/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Http { agent: ureq::Agent::new_with_config(config) })
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(url, request.call())
    }

    pub fn put(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut request = self.agent.put(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(url, request.send_empty())
    }

    pub fn post_form(&self, url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Result<Response, String> {
        let mut request = self.agent.post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(url, request.send_form(form.iter().copied()))
    }
}

fn read(url: &str, sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Response, String> {
    let mut response = sent.map_err(|e| format!("request to {} failed: {}", without_query(url), describe(&e)))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(|e| format!("request to {} failed reading the response: {}", without_query(url), describe(&e)))?;
    Ok(Response { status, body })
}

/// A URL's query may carry a signature or a token: errors show the rest.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}
