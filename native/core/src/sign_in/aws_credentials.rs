//! AWS credentials, found as AWS's SDKs find them: the static keys of the
//! config, else the environment, the shared files' profile, the container
//! credentials endpoint and EC2's IMDSv2, in that order; then the role of
//! `role_arn` assumed through STS. Credentials that expire are fetched
//! again before they do.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::cloud_sign_in::AwsConfig;
use crate::sign_in::http::{without_query, Http};
use crate::sign_in::sigv4::{presign, query_string, Credentials, Request};
use crate::sign_in::utc::parse_iso8601_ms;

/// Fetched again this long before they expire, as AWS's SDKs do.
const REFRESH_BEFORE_MS: i64 = 5 * 60 * 1000;
const IMDS_DEFAULT: &str = "http://169.254.169.254";
const CONTAINER_HOST: &str = "http://169.254.170.2";
const ROLE_SESSION_NAME: &str = "emqx-kafka-bridge";
const ROLE_DURATION_S: u64 = 3600;

pub struct CredentialChain {
    config: AwsConfig,
    /// Container endpoint and STS.
    http: Http,
    /// IMDS answers within a second or is not there (botocore's timeout).
    imds: Http,
    cached: Mutex<Option<Credentials>>,
}

impl CredentialChain {
    pub fn new(config: &AwsConfig) -> Result<CredentialChain, String> {
        Ok(CredentialChain {
            config: config.clone(),
            http: Http::new(Duration::from_secs(5), None)?,
            imds: Http::new(Duration::from_secs(1), None)?,
            cached: Mutex::new(None),
        })
    }

    /// Credentials good for at least a few more minutes, if any source has them.
    pub fn get(&self, now_ms: i64) -> Result<Credentials, String> {
        if let Some(cached) = self.cached.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if fresh_at(cached, now_ms) {
                return Ok(cached.clone());
            }
        }
        let base = self.find(now_ms)?;
        let credentials = if self.config.role_arn.is_empty() { base } else { self.assume_role(&base, now_ms)? };
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(credentials.clone());
        Ok(credentials)
    }

    fn find(&self, now_ms: i64) -> Result<Credentials, String> {
        let aws = &self.config;
        if !aws.access_key_id.is_empty() {
            return Ok(Credentials::fixed(&aws.access_key_id, &aws.secret_access_key, Some(&aws.session_token)));
        }
        if !aws.profile.is_empty() {
            return profile(&aws.profile)?.ok_or_else(|| format!("no credentials in profile {:?} of the shared files", aws.profile));
        }
        // Each source that has none says why, so the status names them all.
        let mut why_not = Vec::new();
        match environment() {
            Ok(found) => return Ok(found),
            Err(why) => why_not.push(format!("environment: {why}")),
        }
        let name = env_nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into());
        match profile(&name) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => why_not.push(format!("profile {name}: no credentials")),
            Err(why) => why_not.push(format!("profile {name}: {why}")),
        }
        match self.container(now_ms) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => why_not.push("container endpoint: not configured".into()),
            Err(why) => why_not.push(format!("container endpoint: {why}")),
        }
        match self.imds(now_ms) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => why_not.push("IMDS: disabled by AWS_EC2_METADATA_DISABLED".into()),
            Err(why) => why_not.push(format!("IMDS: {why}")),
        }
        Err(format!("no AWS credentials found ({})", why_not.join("; ")))
    }

    /// ECS and EKS Pod Identity: a URL in the environment (or the config),
    /// with an authorization token to send when one is given.
    fn container(&self, now_ms: i64) -> Result<Option<Credentials>, String> {
        let url = if !self.config.container_endpoint.is_empty() {
            self.config.container_endpoint.clone()
        } else if let Some(full) = env_nonempty("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            full
        } else if let Some(relative) = env_nonempty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("{CONTAINER_HOST}{relative}")
        } else {
            return Ok(None);
        };
        let token = match env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(file) => Some(
                std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {file:?}: {e}"))?
                    .trim()
                    .to_string(),
            ),
            None => env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        let headers: Vec<(&str, &str)> = token.as_deref().map(|t| ("Authorization", t)).into_iter().collect();
        let response = self.http.get(&url, &headers)?;
        if response.status != 200 {
            return Err(format!("{} answered HTTP {}", without_query(&url), response.status));
        }
        json_credentials(&response.body, "container endpoint", now_ms).map(Some)
    }

    /// EC2's IMDSv2 (or anything that serves its API, such as IAM Roles
    /// Anywhere's credential helper in serve mode): a session token, the
    /// instance's role, then that role's credentials.
    fn imds(&self, now_ms: i64) -> Result<Option<Credentials>, String> {
        if env_nonempty("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let base = if !self.config.imds_endpoint.is_empty() {
            self.config.imds_endpoint.clone()
        } else {
            env_nonempty("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS_DEFAULT.into())
        };
        let base = base.trim_end_matches('/');
        let session = self.imds.put(&format!("{base}/latest/api/token"), &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")])?;
        if session.status != 200 {
            return Err(format!("{base} refused a session token: HTTP {}", session.status));
        }
        let auth = [("X-aws-ec2-metadata-token", session.body.trim())];
        let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
        let roles = self.imds.get(&roles_url, &auth)?;
        let role = roles.body.lines().next().unwrap_or("").trim().to_string();
        if roles.status != 200 || role.is_empty() {
            return Err(format!("{base} names no instance role (HTTP {})", roles.status));
        }
        let credentials = self.imds.get(&format!("{roles_url}{role}"), &auth)?;
        if credentials.status != 200 {
            return Err(format!("{base} gave no credentials for role {role}: HTTP {}", credentials.status));
        }
        json_credentials(&credentials.body, &format!("IMDS {base}"), now_ms).map(Some)
    }

    /// STS AssumeRole, signed with `base`.
    fn assume_role(&self, base: &Credentials, now_ms: i64) -> Result<Credentials, String> {
        let region = &self.config.region;
        let endpoint = if self.config.sts_endpoint.is_empty() {
            format!("https://sts.{region}.amazonaws.com")
        } else {
            self.config.sts_endpoint.trim_end_matches('/').to_string()
        };
        let host = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, rest)| rest).split('/').next().unwrap_or("");
        let request = Request {
            host,
            path: "/",
            query: vec![
                ("Action".into(), "AssumeRole".into()),
                ("DurationSeconds".into(), ROLE_DURATION_S.to_string()),
                ("RoleArn".into(), self.config.role_arn.clone()),
                ("RoleSessionName".into(), ROLE_SESSION_NAME.into()),
                ("Version".into(), "2011-06-15".into()),
            ],
            region,
            service: "sts",
            expires_s: 60,
        };
        let query = presign(&request, base, now_ms.div_euclid(1000))?;
        let response = self.http.get(&format!("{endpoint}/?{}", query_string(&query)), &[])?;
        if response.status != 200 {
            let code = xml_text(&response.body, "Code").unwrap_or_default();
            return Err(format!(
                "STS at {endpoint} refused to assume {} with credentials from {}: HTTP {} {code}",
                self.config.role_arn, base.source, response.status
            ));
        }
        let field = |name| xml_text(&response.body, name).ok_or_else(|| format!("STS at {endpoint}: no {name} in its answer"));
        let expiration = field("Expiration")?;
        Ok(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
            expires_at_ms: Some(parse_iso8601_ms(&expiration).ok_or_else(|| format!("STS at {endpoint}: an Expiration that is no time"))?),
            source: format!("role {} (assumed with credentials from {})", self.config.role_arn, base.source),
        })
    }
}

fn fresh_at(credentials: &Credentials, now_ms: i64) -> bool {
    credentials.expires_at_ms.is_none_or(|end| end - now_ms > REFRESH_BEFORE_MS)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn environment() -> Result<Credentials, String> {
    match (env_nonempty("AWS_ACCESS_KEY_ID"), env_nonempty("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            let token = env_nonempty("AWS_SESSION_TOKEN");
            let mut credentials = Credentials::fixed(&id, &secret, token.as_deref());
            credentials.source = "environment".into();
            Ok(credentials)
        }
        (Some(_), None) => Err("AWS_SECRET_ACCESS_KEY not set".into()),
        _ => Err("AWS_ACCESS_KEY_ID not set".into()),
    }
}

/// The profile's keys, from the credentials file first, then the config
/// file (where its section is `[profile NAME]`, but `[default]`).
fn profile(name: &str) -> Result<Option<Credentials>, String> {
    let home = || std::env::var("HOME").unwrap_or_default();
    let credentials_file = env_nonempty("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| format!("{}/.aws/credentials", home()));
    let config_file = env_nonempty("AWS_CONFIG_FILE").unwrap_or_else(|| format!("{}/.aws/config", home()));
    let config_section = if name == "default" { "default".to_string() } else { format!("profile {name}") };
    for (file, section) in [(&credentials_file, name.to_string()), (&config_file, config_section)] {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {file}: {e}")),
        };
        let keys = ini_section(&text, &section);
        let get = |key: &str| keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            let mut credentials = Credentials::fixed(&id, &secret, get("aws_session_token").as_deref());
            credentials.source = format!("profile {name} in {file}");
            return Ok(Some(credentials));
        }
    }
    Ok(None)
}

/// The `key = value` lines of one `[section]` of an INI file.
fn ini_section(text: &str, wanted: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == wanted;
        } else if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            keys.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    keys
}

/// The JSON that IMDS and the container endpoint return.
fn json_credentials(body: &str, source: &str, now_ms: i64) -> Result<Credentials, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|_| format!("{source}: an answer that is not JSON"))?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
    let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err(format!("{source}: no AccessKeyId and SecretAccessKey in its answer"));
    };
    let expires_at_ms = match field("Expiration") {
        None => None,
        Some(text) => Some(parse_iso8601_ms(&text).ok_or_else(|| format!("{source}: an Expiration that is no time"))?),
    };
    if expires_at_ms.is_some_and(|end| end <= now_ms) {
        return Err(format!("{source}: its credentials have already expired"));
    }
    Ok(Credentials { access_key_id: id, secret_access_key: secret, session_token: field("Token"), expires_at_ms, source: source.into() })
}

/// The text of the first `<name>...</name>` in an STS answer.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_section_and_its_config_file_form() {
        let text = "[default]\naws_access_key_id = A1\n\n[profile dev]\n# note\naws_access_key_id=A2\naws_secret_access_key = S2\n";
        assert_eq!(ini_section(text, "profile dev"), vec![("aws_access_key_id".into(), "A2".into()), ("aws_secret_access_key".into(), "S2".into())]);
        assert_eq!(ini_section(text, "default"), vec![("aws_access_key_id".into(), "A1".into())]);
    }

    #[test]
    fn credentials_never_print_their_secrets() {
        let credentials = Credentials::fixed("AKID", "very-secret", Some("session-secret"));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKID") && !shown.contains("secret"), "{shown}");
    }

    #[test]
    fn reads_sts_and_metadata_answers() {
        let xml = "<AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId></Credentials></AssumeRoleResult>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        let json = r#"{"Code":"Success","AccessKeyId":"ASIA2","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-06T10:00:00Z"}"#;
        let credentials = json_credentials(json, "IMDS", 0).unwrap();
        assert_eq!((credentials.session_token.as_deref(), credentials.expires_at_ms), (Some("t"), Some(1_796_551_200_000)));
        assert!(json_credentials(json, "IMDS", 1_796_551_200_000).unwrap_err().contains("expired"));
    }
}
