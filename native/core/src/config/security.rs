//! `kafka.ssl` and `kafka.sasl`: what an operator fills in, checked and
//! turned into librdkafka properties (`kafka.properties` still overrides).
//!
//! Certificates and keys are given as a file path or as inline PEM; both
//! are read and parsed here, so a missing file or a PEM that does not parse
//! fails validation naming the key, not the first connection. No error
//! here ever echoes a key, a password or a PEM body.

use openssl::pkey::PKey;
use openssl::x509::X509;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsConfig {
    pub enable: bool,
    /// A path or inline PEM; empty: the system's CA store.
    pub ca: String,
    pub certificate: String,
    pub key: String,
    pub key_password: String,
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    #[default]
    None,
    Plain,
    ScramSha256,
    ScramSha512,
    /// A token from an OIDC token endpoint (`cloud_sign_in`).
    OAuthBearer,
    /// A token signed with AWS credentials (`cloud_sign_in`).
    AwsMskIam,
}

impl SaslMechanism {
    pub const CHOICES: &'static [(&'static str, SaslMechanism)] = &[
        ("none", SaslMechanism::None),
        ("plain", SaslMechanism::Plain),
        ("scram_sha_256", SaslMechanism::ScramSha256),
        ("scram_sha_512", SaslMechanism::ScramSha512),
        ("oauthbearer", SaslMechanism::OAuthBearer),
        ("aws_msk_iam", SaslMechanism::AwsMskIam),
    ];

    fn librdkafka_name(self) -> Option<&'static str> {
        match self {
            SaslMechanism::None => None,
            SaslMechanism::Plain => Some("PLAIN"),
            SaslMechanism::ScramSha256 => Some("SCRAM-SHA-256"),
            SaslMechanism::ScramSha512 => Some("SCRAM-SHA-512"),
            SaslMechanism::OAuthBearer | SaslMechanism::AwsMskIam => Some("OAUTHBEARER"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// The librdkafka properties for `tls` and `sasl`, after checking that they
/// fit together and that every certificate and key can be read.
pub fn properties(tls: &TlsConfig, sasl: &SaslConfig) -> Result<Vec<(String, String)>, String> {
    let mut properties = Vec::new();
    let protocol = match (tls.enable, sasl.mechanism.librdkafka_name()) {
        (false, None) => "plaintext",
        (true, None) => "ssl",
        (false, Some(_)) => "sasl_plaintext",
        (true, Some(_)) => "sasl_ssl",
    };
    properties.push(("security.protocol".to_string(), protocol.to_string()));
    if tls.enable {
        tls_properties(tls, &mut properties)?;
    } else {
        for (key, value) in [("ca", &tls.ca), ("certificate", &tls.certificate), ("key", &tls.key), ("key_password", &tls.key_password)] {
            if !value.is_empty() {
                return Err(format!("kafka.ssl.{key}: set kafka.ssl.enable = true to use it"));
            }
        }
    }
    sasl_properties(sasl, &mut properties)?;
    Ok(properties)
}

fn tls_properties(tls: &TlsConfig, properties: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut set = |key: &str, value: String| properties.push((key.to_string(), value));
    if tls.ca.is_empty() {
        // The vendored OpenSSL's own default (/usr/local/ssl) exists on no
        // common distribution: take SSL_CERT_FILE as OpenSSL would, else let
        // librdkafka probe the usual bundle paths (Debian, RHEL, Alpine...).
        match std::env::var("SSL_CERT_FILE") {
            Ok(file) if !file.is_empty() => set("ssl.ca.location", file),
            _ => set("ssl.ca.location", "probe".into()),
        }
    } else {
        let (_, inline) = read_ca("kafka.ssl.ca", &tls.ca)?;
        set(if inline { "ssl.ca.pem" } else { "ssl.ca.location" }, tls.ca.clone());
    }
    match (tls.certificate.is_empty(), tls.key.is_empty()) {
        (true, true) => {
            if !tls.key_password.is_empty() {
                return Err("kafka.ssl.key_password: there is no kafka.ssl.key to decrypt".into());
            }
        }
        (false, true) => return Err("kafka.ssl.key: required with kafka.ssl.certificate (mutual TLS)".into()),
        (true, false) => return Err("kafka.ssl.certificate: required with kafka.ssl.key (mutual TLS)".into()),
        (false, false) => {
            let (pem, inline) = read_pem("kafka.ssl.certificate", &tls.certificate)?;
            let certificate = X509::from_pem(&pem).map_err(|_| "kafka.ssl.certificate: not a PEM certificate".to_string())?;
            set(if inline { "ssl.certificate.pem" } else { "ssl.certificate.location" }, tls.certificate.clone());
            let (pem, inline) = read_pem("kafka.ssl.key", &tls.key)?;
            let key = if tls.key_password.is_empty() {
                PKey::private_key_from_pem(&pem)
            } else {
                PKey::private_key_from_pem_passphrase(&pem, tls.key_password.as_bytes())
            }
            .map_err(|_| {
                "kafka.ssl.key: not a PEM private key, or encrypted and kafka.ssl.key_password does not open it".to_string()
            })?;
            let matches = certificate.public_key().is_ok_and(|public| public.public_eq(&key));
            if !matches {
                return Err("kafka.ssl.key: does not belong to kafka.ssl.certificate".into());
            }
            set(if inline { "ssl.key.pem" } else { "ssl.key.location" }, tls.key.clone());
            if !tls.key_password.is_empty() {
                set("ssl.key.password", tls.key_password.clone());
            }
        }
    }
    let algorithm = if tls.verify_hostname { "https" } else { "none" };
    set("ssl.endpoint.identification.algorithm", algorithm.into());
    Ok(())
}

fn sasl_properties(sasl: &SaslConfig, properties: &mut Vec<(String, String)>) -> Result<(), String> {
    if matches!(sasl.mechanism, SaslMechanism::OAuthBearer | SaslMechanism::AwsMskIam) {
        // The token is the credential: librdkafka gets it from the producer
        // thread (kafka::token_refresh), never a username or password.
        if let Some(key) = [("username", &sasl.username), ("password", &sasl.password)].iter().find(|(_, v)| !v.is_empty()).map(|(k, _)| k) {
            return Err(format!("kafka.sasl.{key}: not used with kafka.sasl.mechanism = oauthbearer or aws_msk_iam"));
        }
        properties.push(("sasl.mechanism".into(), "OAUTHBEARER".into()));
        return Ok(());
    }
    match sasl.mechanism.librdkafka_name() {
        None if !sasl.username.is_empty() || !sasl.password.is_empty() => {
            let key = if sasl.password.is_empty() { "username" } else { "password" };
            Err(format!("kafka.sasl.{key}: set kafka.sasl.mechanism too (plain, scram_sha_256 or scram_sha_512)"))
        }
        None => Ok(()),
        Some(_) if sasl.username.is_empty() => Err("kafka.sasl.username: required with kafka.sasl.mechanism".into()),
        Some(_) if sasl.password.is_empty() => Err("kafka.sasl.password: required with kafka.sasl.mechanism".into()),
        Some(name) => {
            properties.push(("sasl.mechanism".into(), name.into()));
            properties.push(("sasl.username".into(), sasl.username.clone()));
            properties.push(("sasl.password".into(), sasl.password.clone()));
            Ok(())
        }
    }
}

/// A CA bundle (`read_pem`) that holds at least one certificate.
pub(crate) fn read_ca(key: &str, value: &str) -> Result<(Vec<u8>, bool), String> {
    let (pem, inline) = read_pem(key, value)?;
    if X509::stack_from_pem(&pem).map_or(true, |certs| certs.is_empty()) {
        return Err(format!("{key}: no PEM certificate in it"));
    }
    Ok((pem, inline))
}

/// The PEM bytes of `value`, inline or read from the file it names, and
/// whether it was inline. A file's error names the path, never its content.
pub(crate) fn read_pem(key: &str, value: &str) -> Result<(Vec<u8>, bool), String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok((value.as_bytes().to_vec(), true));
    }
    std::fs::read(value).map(|bytes| (bytes, false)).map_err(|e| format!("{key}: cannot read {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsConfig {
        TlsConfig { enable: true, verify_hostname: true, ..TlsConfig::default() }
    }

    fn property<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
        properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn protocol_follows_tls_and_sasl() {
        let sasl = SaslConfig { mechanism: SaslMechanism::ScramSha512, username: "u".into(), password: "p".into() };
        let none = SaslConfig::default();
        let cases = [
            (TlsConfig::default(), &none, "plaintext"),
            (tls(), &none, "ssl"),
            (TlsConfig::default(), &sasl, "sasl_plaintext"),
            (tls(), &sasl, "sasl_ssl"),
        ];
        for (tls, sasl, protocol) in cases {
            let properties = properties(&tls, sasl).unwrap();
            assert_eq!(property(&properties, "security.protocol"), Some(protocol));
        }
        let properties = properties(&tls(), &sasl).unwrap();
        assert_eq!(property(&properties, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(property(&properties, "ssl.endpoint.identification.algorithm"), Some("https"));
    }

    /// The mapping is checked against librdkafka's own config parser here;
    /// security_SUITE signs in with PLAIN on Apache Kafka.
    #[test]
    fn plain_over_tls_is_accepted_by_librdkafka() {
        let sasl = SaslConfig { mechanism: SaslMechanism::Plain, username: "key".into(), password: "secret".into() };
        let properties = properties(&tls(), &sasl).unwrap();
        assert_eq!(property(&properties, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(property(&properties, "sasl.mechanism"), Some("PLAIN"));
        let mut config = rdkafka::ClientConfig::new();
        for (key, value) in &properties {
            config.set(key, value);
        }
        config.set("compression.type", "zstd");
        assert!(config.create_native_config().is_ok());
    }

    #[test]
    fn no_ca_means_the_system_store() {
        std::env::remove_var("SSL_CERT_FILE");
        let properties = properties(&tls(), &SaslConfig::default()).unwrap();
        assert_eq!(property(&properties, "ssl.ca.location"), Some("probe"));
    }

    #[test]
    fn wrong_combinations_name_the_key_and_never_the_secret() {
        let secret = "S3cr3t-never-shown";
        let cases: Vec<(TlsConfig, SaslConfig, &str)> = vec![
            (TlsConfig::default(), SaslConfig { password: secret.into(), ..SaslConfig::default() }, "kafka.sasl.password"),
            (tls(), SaslConfig { mechanism: SaslMechanism::Plain, password: secret.into(), ..SaslConfig::default() }, "kafka.sasl.username"),
            (TlsConfig { key: "/k.pem".into(), ..tls() }, SaslConfig::default(), "kafka.ssl.certificate"),
            (TlsConfig { key_password: secret.into(), ..tls() }, SaslConfig::default(), "kafka.ssl.key_password"),
            (TlsConfig { ca: "/nonexistent/ca.pem".into(), ..tls() }, SaslConfig::default(), "kafka.ssl.ca"),
            (TlsConfig { ca: "-----BEGIN CERTIFICATE-----\nnope\n".into(), ..tls() }, SaslConfig::default(), "kafka.ssl.ca"),
            (TlsConfig { ca: "/ca.pem".into(), ..TlsConfig::default() }, SaslConfig::default(), "kafka.ssl.ca"),
        ];
        for (tls, sasl, key) in cases {
            let error = properties(&tls, &sasl).unwrap_err();
            assert!(error.starts_with(key), "{error}");
            assert!(!error.contains(secret), "{error}");
        }
    }
}
