//! The AWS MSK IAM token: a presigned `kafka-cluster:Connect` URL, base64url
//! without padding, as AWS's signer libraries make it. A Kafka broker
//! cannot check it; MSK does.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::cloud_sign_in::AwsConfig;
use crate::sign_in::aws_credentials::CredentialChain;
use crate::sign_in::sigv4::{presign, query_string, Credentials, Request};
use crate::sign_in::token::{Token, TokenSource};

/// How long a token is good for, as AWS's signers set it.
pub const TOKEN_LIFETIME_S: u64 = 900;
pub const USER_AGENT: &str = concat!("emqx-plugin-kafka-bridge/", env!("CARGO_PKG_VERSION"));

/// The token and its expiry (Unix ms) for `credentials` at `unix_s`. The
/// test entry point: AWS's own signer, fed the same inputs, gives the same
/// bytes (test/msk_iam_signer.py).
pub fn token(credentials: &Credentials, region: &str, unix_s: i64, user_agent: &str) -> Result<(String, i64), String> {
    let host = format!("kafka.{region}.amazonaws.com");
    let request = Request {
        host: &host,
        path: "/",
        query: vec![("Action".into(), "kafka-cluster:Connect".into())],
        region,
        service: "kafka-cluster",
        expires_s: TOKEN_LIFETIME_S,
    };
    let mut query = presign(&request, credentials, unix_s)?;
    query.push(("User-Agent".into(), user_agent.into()));
    let url = format!("https://{host}/?{}", query_string(&query));
    Ok((URL_SAFE_NO_PAD.encode(url), (unix_s + TOKEN_LIFETIME_S as i64) * 1000))
}

pub struct MskIam {
    region: String,
    credentials: CredentialChain,
}

impl MskIam {
    pub fn new(aws: &AwsConfig) -> Result<MskIam, String> {
        Ok(MskIam { region: aws.region.clone(), credentials: CredentialChain::new(aws)? })
    }
}

impl TokenSource for MskIam {
    fn fetch(&self, now_ms: i64) -> Result<Token, String> {
        let credentials = self.credentials.get(now_ms)?;
        let (value, expires_at_ms) = token(&credentials, &self.region, now_ms.div_euclid(1000), USER_AGENT)?;
        // Refreshed before the credentials it was signed with run out.
        let expires_at_ms = credentials.expires_at_ms.map_or(expires_at_ms, |end| end.min(expires_at_ms));
        Ok(Token { value, expires_at_ms, principal: "aws_msk_iam".into(), extensions: Vec::new() })
    }

    fn describe(&self) -> String {
        format!("AWS MSK IAM ({})", self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// AWS's Python signer (`make pyenv` installs it, pinned) and this one,
    /// fed the same credentials, regions and clocks, give the same bytes:
    /// with and without a session token, characters SigV4 must escape, a
    /// leap day, and a second before midnight.
    #[test]
    fn tokens_are_byte_identical_to_aws_signer() {
        let cases = json!([
            {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
             "session_token": null, "region": "us-east-1", "unix_s": 1_796_551_200},
            {"access_key_id": "ASIAQEXAMPLE", "secret_access_key": "s3cr3t/with+slash=",
             "session_token": "IQoJb3JpZ2luX2VjE/+token==", "region": "eu-central-1", "unix_s": 1_709_251_199},
            {"access_key_id": "AKIA2", "secret_access_key": "x", "session_token": "tok en&=",
             "region": "ap-southeast-2", "unix_s": 951_782_400},
        ]);
        let python = crate::repo_file("_build/pyenv/bin/python");
        let mut child = Command::new(&python)
            .arg(crate::repo_file("test/msk_iam_signer.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python:?}: {e} (`make pyenv` installs AWS's signer)"));
        child.stdin.take().unwrap().write_all(cases.to_string().as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "AWS's signer failed");
        let theirs: Value = serde_json::from_slice(&output.stdout).unwrap();
        let user_agent = theirs["user_agent"].as_str().unwrap();
        assert!(user_agent.starts_with("aws-msk-iam-sasl-signer-python/"), "{user_agent}");
        for (case, expected) in cases.as_array().unwrap().iter().zip(theirs["tokens"].as_array().unwrap()) {
            let credentials = Credentials::fixed(
                case["access_key_id"].as_str().unwrap(),
                case["secret_access_key"].as_str().unwrap(),
                case["session_token"].as_str(),
            );
            let (token, expiry_ms) =
                token(&credentials, case["region"].as_str().unwrap(), case["unix_s"].as_i64().unwrap(), user_agent).unwrap();
            assert_eq!(token, expected["token"].as_str().unwrap(), "{case}");
            assert_eq!(expiry_ms, expected["expiry_ms"].as_i64().unwrap(), "{case}");
        }
    }
}
