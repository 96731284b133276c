//! `kafka.sasl.oauthbearer` and `kafka.sasl.aws`: the two token sign-ins
//! (`sign_in` fetches the tokens). Checked here so that a wrong
//! combination fails validation naming the key, never echoing a secret.

use crate::config::security::{read_ca, SaslMechanism};

/// OAuth 2.0 client credentials against an OIDC token endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OAuthBearerConfig {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: String,
    /// SASL extensions sent with the token (Confluent Cloud's
    /// `logicalCluster` and `identityPoolId`).
    pub extensions: Vec<(String, String)>,
    /// A path or inline PEM: the CAs the token endpoint's certificate is
    /// checked against; empty: the system's store.
    pub ca: String,
}

/// AWS MSK IAM: where the credentials come from, and the role to assume.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AwsConfig {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// A profile of the shared credentials and config files: forces that source.
    pub profile: String,
    pub role_arn: String,
    /// Overrides of the HTTP sources' addresses (empty: AWS's own).
    pub imds_endpoint: String,
    pub container_endpoint: String,
    pub sts_endpoint: String,
}

/// What signs the producer in with a token, if anything does.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TokenSignIn {
    #[default]
    None,
    OAuthBearer(OAuthBearerConfig),
    AwsMskIam(AwsConfig),
}

/// Checks the keys of both sections against `mechanism`, and returns the
/// sign-in it selects.
pub fn check(mechanism: SaslMechanism, oauth: &OAuthBearerConfig, aws: &AwsConfig) -> Result<TokenSignIn, String> {
    match mechanism {
        SaslMechanism::OAuthBearer => {
            refuse_any(aws_keys(aws), "kafka.sasl.aws", "aws_msk_iam")?;
            check_oauth(oauth)?;
            Ok(TokenSignIn::OAuthBearer(oauth.clone()))
        }
        SaslMechanism::AwsMskIam => {
            refuse_any(oauth_keys(oauth), "kafka.sasl.oauthbearer", "oauthbearer")?;
            check_aws(aws)?;
            Ok(TokenSignIn::AwsMskIam(aws.clone()))
        }
        _ => {
            refuse_any(oauth_keys(oauth), "kafka.sasl.oauthbearer", "oauthbearer")?;
            refuse_any(aws_keys(aws), "kafka.sasl.aws", "aws_msk_iam")?;
            Ok(TokenSignIn::None)
        }
    }
}

fn oauth_keys(oauth: &OAuthBearerConfig) -> Vec<(&'static str, bool)> {
    vec![
        ("token_endpoint", !oauth.token_endpoint.is_empty()),
        ("client_id", !oauth.client_id.is_empty()),
        ("client_secret", !oauth.client_secret.is_empty()),
        ("scope", !oauth.scope.is_empty()),
        ("extensions", !oauth.extensions.is_empty()),
        ("ca", !oauth.ca.is_empty()),
    ]
}

fn aws_keys(aws: &AwsConfig) -> Vec<(&'static str, bool)> {
    vec![
        ("region", !aws.region.is_empty()),
        ("access_key_id", !aws.access_key_id.is_empty()),
        ("secret_access_key", !aws.secret_access_key.is_empty()),
        ("session_token", !aws.session_token.is_empty()),
        ("profile", !aws.profile.is_empty()),
        ("role_arn", !aws.role_arn.is_empty()),
        ("imds_endpoint", !aws.imds_endpoint.is_empty()),
        ("container_endpoint", !aws.container_endpoint.is_empty()),
        ("sts_endpoint", !aws.sts_endpoint.is_empty()),
    ]
}

/// A key of another mechanism's section that is set.
fn refuse_any(keys: Vec<(&'static str, bool)>, section: &str, mechanism: &str) -> Result<(), String> {
    match keys.into_iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(format!("{section}.{key}: set kafka.sasl.mechanism = {mechanism} to use it")),
        None => Ok(()),
    }
}

fn check_oauth(oauth: &OAuthBearerConfig) -> Result<(), String> {
    check_url("kafka.sasl.oauthbearer.token_endpoint", &oauth.token_endpoint, true)?;
    if oauth.client_id.is_empty() {
        return Err("kafka.sasl.oauthbearer.client_id: required with kafka.sasl.mechanism = oauthbearer".into());
    }
    if oauth.client_secret.is_empty() {
        return Err("kafka.sasl.oauthbearer.client_secret: required with kafka.sasl.mechanism = oauthbearer".into());
    }
    // RFC 7628's grammar, which librdkafka enforces when the token is set.
    for (key, value) in &oauth.extensions {
        let path = format!("kafka.sasl.oauthbearer.extensions.{key}");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || key == "auth" {
            return Err(format!("{path}: a name of letters only, and not \"auth\""));
        }
        if !value.bytes().all(|b| b == b'\t' || b == b'\r' || b == b'\n' || (0x20..=0x7e).contains(&b)) {
            return Err(format!("{path}: printable ASCII only"));
        }
    }
    if !oauth.ca.is_empty() {
        read_ca("kafka.sasl.oauthbearer.ca", &oauth.ca)?;
        if oauth.token_endpoint.starts_with("http://") {
            return Err("kafka.sasl.oauthbearer.ca: the token endpoint is plain http".into());
        }
    }
    Ok(())
}

fn check_aws(aws: &AwsConfig) -> Result<(), String> {
    let region_ok = !aws.region.is_empty() && aws.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !region_ok {
        let problem = if aws.region.is_empty() { "required with kafka.sasl.mechanism = aws_msk_iam" } else { "not a region name" };
        return Err(format!("kafka.sasl.aws.region: {problem}"));
    }
    match (aws.access_key_id.is_empty(), aws.secret_access_key.is_empty()) {
        (false, true) => return Err("kafka.sasl.aws.secret_access_key: required with kafka.sasl.aws.access_key_id".into()),
        (true, false) => return Err("kafka.sasl.aws.access_key_id: required with kafka.sasl.aws.secret_access_key".into()),
        _ => {}
    }
    if aws.access_key_id.is_empty() && !aws.session_token.is_empty() {
        return Err("kafka.sasl.aws.session_token: only with kafka.sasl.aws.access_key_id".into());
    }
    if !aws.access_key_id.is_empty() && !aws.profile.is_empty() {
        return Err("kafka.sasl.aws.profile: two credential sources at once: \
                    leave it empty to use kafka.sasl.aws.access_key_id, or clear the static keys"
            .into());
    }
    if !aws.role_arn.is_empty() && !aws.role_arn.starts_with("arn:") {
        return Err("kafka.sasl.aws.role_arn: expected an ARN (arn:aws:iam::ACCOUNT:role/NAME)".into());
    }
    check_url("kafka.sasl.aws.imds_endpoint", &aws.imds_endpoint, false)?;
    check_url("kafka.sasl.aws.container_endpoint", &aws.container_endpoint, false)?;
    check_url("kafka.sasl.aws.sts_endpoint", &aws.sts_endpoint, false)
}

fn check_url(key: &str, url: &str, required: bool) -> Result<(), String> {
    if url.is_empty() {
        return if required { Err(format!("{key}: required")) } else { Ok(()) };
    }
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("{key}: expected an http:// or https:// URL, got {url:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth() -> OAuthBearerConfig {
        OAuthBearerConfig {
            token_endpoint: "https://idp.example/token".into(),
            client_id: "emqx".into(),
            client_secret: "S3cr3t-never-shown".into(),
            ..OAuthBearerConfig::default()
        }
    }

    #[test]
    fn wrong_combinations_name_the_key_and_never_the_secret() {
        let secret = "S3cr3t-never-shown";
        let aws = AwsConfig { region: "eu-west-1".into(), ..AwsConfig::default() };
        let cases: Vec<(SaslMechanism, OAuthBearerConfig, AwsConfig, &str)> = vec![
            (SaslMechanism::None, oauth(), AwsConfig::default(), "kafka.sasl.oauthbearer.token_endpoint: set kafka.sasl.mechanism = oauthbearer"),
            (SaslMechanism::Plain, OAuthBearerConfig::default(), aws.clone(), "kafka.sasl.aws.region: set kafka.sasl.mechanism = aws_msk_iam"),
            (SaslMechanism::OAuthBearer, oauth(), aws.clone(), "kafka.sasl.aws.region: set"),
            (SaslMechanism::OAuthBearer, OAuthBearerConfig { client_secret: String::new(), ..oauth() }, AwsConfig::default(), "kafka.sasl.oauthbearer.client_secret: required"),
            (SaslMechanism::OAuthBearer, OAuthBearerConfig { token_endpoint: "idp:443".into(), ..oauth() }, AwsConfig::default(), "kafka.sasl.oauthbearer.token_endpoint: expected"),
            (SaslMechanism::OAuthBearer, OAuthBearerConfig { extensions: vec![("auth".into(), "x".into())], ..oauth() }, AwsConfig::default(), "kafka.sasl.oauthbearer.extensions.auth"),
            (SaslMechanism::OAuthBearer, OAuthBearerConfig { ca: "/nonexistent/ca.pem".into(), ..oauth() }, AwsConfig::default(), "kafka.sasl.oauthbearer.ca: cannot read"),
            (SaslMechanism::AwsMskIam, OAuthBearerConfig::default(), AwsConfig::default(), "kafka.sasl.aws.region: required"),
            (SaslMechanism::AwsMskIam, oauth(), aws.clone(), "kafka.sasl.oauthbearer.token_endpoint: set"),
            (SaslMechanism::AwsMskIam, OAuthBearerConfig::default(), AwsConfig { secret_access_key: secret.into(), ..aws.clone() }, "kafka.sasl.aws.access_key_id: required"),
            (SaslMechanism::AwsMskIam, OAuthBearerConfig::default(), AwsConfig { session_token: secret.into(), ..aws.clone() }, "kafka.sasl.aws.session_token"),
            (
                SaslMechanism::AwsMskIam,
                OAuthBearerConfig::default(),
                AwsConfig { access_key_id: "AKID".into(), secret_access_key: secret.into(), profile: "dev".into(), ..aws.clone() },
                "kafka.sasl.aws.profile: two credential sources",
            ),
            (SaslMechanism::AwsMskIam, OAuthBearerConfig::default(), AwsConfig { imds_endpoint: "169.254.169.254".into(), ..aws.clone() }, "kafka.sasl.aws.imds_endpoint"),
        ];
        for (mechanism, oauth, aws, expected) in cases {
            let error = check(mechanism, &oauth, &aws).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[test]
    fn each_mechanism_selects_its_sign_in() {
        assert_eq!(check(SaslMechanism::OAuthBearer, &oauth(), &AwsConfig::default()), Ok(TokenSignIn::OAuthBearer(oauth())));
        let aws = AwsConfig { region: "us-east-1".into(), role_arn: "arn:aws:iam::1:role/r".into(), ..AwsConfig::default() };
        assert_eq!(check(SaslMechanism::AwsMskIam, &OAuthBearerConfig::default(), &aws), Ok(TokenSignIn::AwsMskIam(aws.clone())));
        let none = check(SaslMechanism::ScramSha256, &OAuthBearerConfig::default(), &AwsConfig::default());
        assert_eq!(none, Ok(TokenSignIn::None));
    }
}
