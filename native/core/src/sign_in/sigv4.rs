//! AWS Signature Version 4 in the query string ("presigned"), as AWS's
//! MSK IAM signers and botocore's `SigV4QueryAuth` write it: the MSK
//! token, and the STS request that assumes a role. HMAC-SHA256 and
//! SHA-256 are OpenSSL's. Checked byte for byte against AWS's own signer
//! (`msk_iam`'s test).

use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;

use crate::sign_in::utc::amz_date;

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Unix ms; None: they do not expire.
    pub expires_at_ms: Option<i64>,
    /// Where they came from, for status.
    pub source: String,
}

/// Never the secret or the session token, whatever prints it.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {}, expires {:?})", self.access_key_id, self.source, self.expires_at_ms)
    }
}

impl Credentials {
    pub fn fixed(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.filter(|t| !t.is_empty()).map(str::to_string),
            expires_at_ms: None,
            source: "static keys".into(),
        }
    }
}

/// What is signed: a GET of `https://{host}{path}?{query}`.
pub struct Request<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub region: &'a str,
    pub service: &'a str,
    pub expires_s: u64,
}

/// The request's query with the signature parameters added, in the order
/// botocore writes them: the request's own, then SigV4's, the signature
/// last. What is signed is the same parameters sorted.
pub fn presign(request: &Request<'_>, credentials: &Credentials, unix_s: i64) -> Result<Vec<(String, String)>, String> {
    let (date, timestamp) = amz_date(unix_s);
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let mut query = request.query.clone();
    query.push(("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()));
    query.push(("X-Amz-Credential".into(), format!("{}/{scope}", credentials.access_key_id)));
    query.push(("X-Amz-Date".into(), timestamp.clone()));
    query.push(("X-Amz-Expires".into(), request.expires_s.to_string()));
    query.push(("X-Amz-SignedHeaders".into(), "host".into()));
    if let Some(token) = &credentials.session_token {
        query.push(("X-Amz-Security-Token".into(), token.clone()));
    }
    let mut sorted = query.clone();
    sorted.sort_by(|a, b| (encode(&a.0), encode(&a.1)).cmp(&(encode(&b.0), encode(&b.1))));
    // A GET's empty body, hashed: botocore signs it so for every service but S3.
    let empty_body = hex(&hash(MessageDigest::sha256(), b"").map_err(|e| e.to_string())?);
    let canonical_request =
        format!("GET\n{}\n{}\nhost:{}\n\nhost\n{empty_body}", request.path, query_string(&sorted), request.host);
    let digest = hash(MessageDigest::sha256(), canonical_request.as_bytes()).map_err(|e| e.to_string())?;
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{}", hex(&digest));
    let mut key = hmac(format!("AWS4{}", credentials.secret_access_key).as_bytes(), date.as_bytes())?;
    for part in [request.region, request.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes())?;
    }
    let signature = hmac(&key, string_to_sign.as_bytes())?;
    query.push(("X-Amz-Signature".into(), hex(&signature)));
    Ok(query)
}

/// `k=v&k=v`, each part encoded as SigV4 wants.
pub fn query_string(query: &[(String, String)]) -> String {
    query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes all but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let key = PKey::hmac(key).map_err(|e| e.to_string())?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(|e| e.to_string())?;
    signer.sign_oneshot_to_vec(data).map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
