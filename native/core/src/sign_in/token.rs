//! What a token sign-in produces, and what produces it.

pub struct Token {
    pub value: String,
    /// Unix ms.
    pub expires_at_ms: i64,
    pub principal: String,
    pub extensions: Vec<(String, String)>,
}

pub trait TokenSource: Send + Sync {
    /// A fresh token; the error names the endpoint that failed and why,
    /// never a secret.
    fn fetch(&self, now_ms: i64) -> Result<Token, String>;
    /// Where tokens come from, for status.
    fn describe(&self) -> String;
}
