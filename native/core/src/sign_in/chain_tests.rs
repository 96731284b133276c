//! The AWS credential chain against local stand-ins of its HTTP sources
//! (IMDSv2, a container credentials endpoint, IAM Roles Anywhere's helper
//! in serve mode, STS), and its environment and profile sources; each
//! case reads which credentials signed the MSK IAM token it produced.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::cloud_sign_in::AwsConfig;
use crate::sign_in::msk_iam::MskIam;
use crate::sign_in::token::TokenSource;

/// The chain reads the process environment: one case at a time.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

const NOW_MS: i64 = 1_796_551_200_000; // 2026-12-06T10:00:00Z

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

/// An HTTP/1.1 server on loopback answering with `handler`, one request
/// per connection; returns its base URL and the requests' count.
fn serve(handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let (handler, count): (Arc<Handler>, _) = (Arc::new(handler), served.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut headers = HashMap::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                match header.trim_end().split_once(':') {
                    Some((name, value)) => headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string()),
                    None => break,
                };
            }
            let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
            reader.by_ref().take(length).read_to_end(&mut Vec::new()).unwrap();
            count.fetch_add(1, SeqCst);
            let (status, body) = handler(&Request { method, path, headers });
            let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (url, served)
}

fn credentials_json(key: &str, expires: &str) -> String {
    format!(r#"{{"Code":"Success","AccessKeyId":"{key}","SecretAccessKey":"secret-of-{key}","Token":"session-of-{key}","Expiration":"{expires}"}}"#)
}

/// IMDSv2 as EC2 serves it (and Roles Anywhere's helper emulates it): a
/// PUT for a session token, which every GET must carry.
fn imds(role: &'static str, key: &'static str) -> impl Fn(&Request) -> (u16, String) + Send + Sync {
    move |request| {
        let session = "session-token-123";
        let authorized = request.headers.get("x-aws-ec2-metadata-token").map(String::as_str) == Some(session);
        match (request.method.as_str(), request.path.as_str()) {
            ("PUT", "/latest/api/token") if request.headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") => {
                (200, session.into())
            }
            (_, _) if !authorized => (401, String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, format!("{role}\n")),
            ("GET", path) if path == format!("/latest/meta-data/iam/security-credentials/{role}") => {
                (200, credentials_json(key, "2026-12-06T16:00:00Z"))
            }
            _ => (404, String::new()),
        }
    }
}

/// A clean environment: no AWS variables, no shared files, no IMDS, plus `set`.
fn environment(set: &[(&str, &str)]) {
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            std::env::remove_var(name);
        }
    }
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/config");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in set {
        std::env::set_var(name, value);
    }
}

/// (access key id, session token) in the MSK token made at `now_ms`.
fn signed_with(source: &MskIam, now_ms: i64) -> (String, Option<String>) {
    let token = source.fetch(now_ms).unwrap();
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(&token.value).unwrap()).unwrap();
    let param = |name: &str| {
        url.split(['?', '&']).find_map(|pair| pair.strip_prefix(&format!("{name}="))).map(percent_decoded)
    };
    let credential = param("X-Amz-Credential").unwrap();
    (credential.split('/').next().unwrap().to_string(), param("X-Amz-Security-Token"))
}

fn percent_decoded(text: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' && tail.len() >= 2 {
            bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).unwrap()
}

fn aws(overrides: impl FnOnce(&mut AwsConfig)) -> MskIam {
    let mut config = AwsConfig { region: "us-east-1".into(), ..AwsConfig::default() };
    overrides(&mut config);
    MskIam::new(&config).unwrap()
}

#[test]
fn imds_v2_session_then_role_credentials_and_an_overridden_endpoint_wins() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let (ec2, _) = serve(imds("instance-role", "ASIAEC2"));
    let (helper, served) = serve(imds("roles-anywhere", "ASIAHELPER"));
    environment(&[("AWS_EC2_METADATA_DISABLED", "false"), ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &ec2)]);
    assert_eq!(signed_with(&aws(|_| {}), NOW_MS), ("ASIAEC2".into(), Some("session-of-ASIAEC2".into())));
    // IAM Roles Anywhere's credential helper in serve mode, named in the config.
    let source = aws(|c| c.imds_endpoint = helper.clone());
    assert_eq!(signed_with(&source, NOW_MS).0, "ASIAHELPER");
    assert_eq!(served.load(SeqCst), 3, "token PUT, role name, credentials");
}

#[test]
fn container_endpoint_with_its_authorization_token_file() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let (url, _) = serve(|request| match request.headers.get("authorization").map(String::as_str) {
        Some("pod-identity-token") if request.path == "/v1/credentials" => (200, credentials_json("ASIAPOD", "2026-12-06T16:00:00Z")),
        _ => (401, String::new()),
    });
    let token_file = std::env::temp_dir().join(format!("bridge-container-token-{}", std::process::id()));
    std::fs::write(&token_file, "pod-identity-token\n").unwrap();
    environment(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("{url}/v1/credentials")),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap()),
    ]);
    assert_eq!(signed_with(&aws(|_| {}), NOW_MS), ("ASIAPOD".into(), Some("session-of-ASIAPOD".into())));
    // The same endpoint named in the config instead, with the token given inline.
    environment(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")]);
    let source = aws(|c| c.container_endpoint = format!("{url}/v1/credentials"));
    assert_eq!(signed_with(&source, NOW_MS).0, "ASIAPOD");
    std::fs::remove_file(token_file).unwrap();
}

#[test]
fn environment_comes_before_files_and_endpoints() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let (url, served) = serve(imds("role", "ASIAEC2"));
    environment(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url),
    ]);
    assert_eq!(signed_with(&aws(|_| {}), NOW_MS), ("AKIAENV".into(), None));
    assert_eq!(served.load(SeqCst), 0);
}

#[test]
fn profiles_from_the_credentials_and_the_config_file() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("bridge-aws-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (credentials, config) = (dir.join("credentials"), dir.join("config"));
    std::fs::write(&credentials, "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n").unwrap();
    std::fs::write(&config, "[profile dev]\naws_access_key_id=AKIADEV\naws_secret_access_key=s\naws_session_token=t=\n").unwrap();
    environment(&[]);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    std::env::set_var("AWS_CONFIG_FILE", &config);
    assert_eq!(signed_with(&aws(|_| {}), NOW_MS).0, "AKIADEFAULT");
    assert_eq!(signed_with(&aws(|c| c.profile = "dev".into()), NOW_MS), ("AKIADEV".into(), Some("t=".into())));
    std::env::set_var("AWS_PROFILE", "dev");
    assert_eq!(signed_with(&aws(|_| {}), NOW_MS).0, "AKIADEV");
    let missing = aws(|c| c.profile = "prod".into()).fetch(NOW_MS).err().unwrap();
    assert!(missing.contains("no credentials in profile \"prod\""), "{missing}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Credentials that expire are fetched again within 5 minutes of their
/// end, and the token never outlives them.
#[test]
fn expiring_credentials_are_fetched_again() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let fetched = Arc::new(AtomicUsize::new(0));
    let count = fetched.clone();
    let (url, _) = serve(move |request| {
        if request.path != "/creds" {
            return (404, String::new());
        }
        let n = count.fetch_add(1, SeqCst) + 1;
        // The first expire at 10:10, the second at 11:00.
        let expires = if n == 1 { "2026-12-06T10:10:00Z" } else { "2026-12-06T11:00:00Z" };
        (200, credentials_json(&format!("ASIAROUND{n}"), expires))
    });
    environment(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("{url}/creds"))]);
    let source = aws(|_| {});
    let first = source.fetch(NOW_MS).unwrap();
    assert_eq!(first.expires_at_ms, NOW_MS + 600_000, "the token ends with its credentials");
    assert_eq!(signed_with(&source, NOW_MS + 60_000).0, "ASIAROUND1", "still 9 minutes left: kept");
    assert_eq!(signed_with(&source, NOW_MS + 6 * 60_000).0, "ASIAROUND2", "4 minutes left: fetched again");
    assert_eq!(fetched.load(SeqCst), 2);
}

/// `role_arn`: STS AssumeRole, signed with the credentials found.
#[test]
fn a_role_is_assumed_with_the_credentials_found() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let (sts, _) = serve(|request| {
        let signed_by_static_key = request.path.contains("X-Amz-Credential=AKIASTATIC%2F20261206%2Fus-east-1%2Fsts%2F");
        let asks = request.path.contains("Action=AssumeRole") && request.path.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fwriter");
        if !(signed_by_static_key && asks && request.path.contains("X-Amz-Signature=")) {
            return (403, "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>".into());
        }
        let credentials = "<AccessKeyId>ASIAROLE</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey>\
                           <SessionToken>role-session</SessionToken><Expiration>2026-12-06T11:00:00Z</Expiration>";
        (200, format!("<AssumeRoleResponse><AssumeRoleResult><Credentials>{credentials}</Credentials></AssumeRoleResult></AssumeRoleResponse>"))
    });
    environment(&[]);
    let source = aws(|c| {
        c.access_key_id = "AKIASTATIC".into();
        c.secret_access_key = "static-secret".into();
        c.role_arn = "arn:aws:iam::1:role/writer".into();
        c.sts_endpoint = sts.clone();
    });
    assert_eq!(signed_with(&source, NOW_MS), ("ASIAROLE".into(), Some("role-session".into())));
    let refused = aws(|c| {
        c.access_key_id = "AKIAOTHER".into();
        c.secret_access_key = "s".into();
        c.role_arn = "arn:aws:iam::1:role/writer".into();
        c.sts_endpoint = sts.clone();
    });
    let error = refused.fetch(NOW_MS).err().unwrap();
    assert!(error.contains("refused to assume arn:aws:iam::1:role/writer") && error.contains("HTTP 403 AccessDenied"), "{error}");
}

#[test]
fn no_source_names_every_one_it_tried() {
    let _one = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    environment(&[]);
    let error = aws(|_| {}).fetch(NOW_MS).err().unwrap();
    for part in ["environment: AWS_ACCESS_KEY_ID not set", "profile default: no credentials", "container endpoint: not configured", "IMDS: disabled"] {
        assert!(error.contains(part), "{error}");
    }
}
